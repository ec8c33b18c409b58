"""nginx as a TLS reverse proxy with upstream keep-alive: the physical reference.

Writes a self-contained config under a temporary prefix (pid file, logs, temp paths all
inside it) and runs nginx in the foreground as the current user (`daemon off`). It proxies
every path to the backend unchanged; it checks no token (it is the cost of TLS + proxying
that edgeauth is compared with, not an OAuth gateway). Bodies stream both ways: request
buffering off, response buffers in memory only (no temp files).

`write_static_config` makes nginx the static backend instead: plain HTTP, one fixed JSON body
for every request, so that the backend never sets the pace of a throughput run.

`write_stream_config` makes it a TLS-terminating TCP relay (the `stream {}` module, for the
stream-tcp scenario). Distributions build that module apart (Debian: libnginx-mod-stream);
`stream_module` says whether this nginx has it and what loads it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


def binary() -> str | None:
    for candidate in ("nginx", "/usr/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def version() -> str:
    path = binary()
    if path is None:
        return ""
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"nginx/(\S+)", out.stderr + out.stdout)
    return match.group(1) if match else "unknown"


def _configure_arguments() -> list[str]:
    path = binary()
    if path is None:
        return []
    out = subprocess.run([path, "-V"], capture_output=True, text=True, check=False)
    return (out.stderr + out.stdout).split()


def stream_module() -> str | None:
    """The `load_module` line the stream module with TLS needs ("" when it is built in), or
    None when this nginx cannot terminate TLS in a `stream {}` block."""
    arguments = _configure_arguments()
    if "--with-stream_ssl_module" not in arguments:
        return None
    if "--with-stream" in arguments:
        return ""
    if "--with-stream=dynamic" not in arguments:
        return None
    modules = next(
        (a.partition("=")[2] for a in arguments if a.startswith("--modules-path=")),
        "/usr/lib/nginx/modules",
    )
    found = Path(modules, "ngx_stream_module.so")
    return f"load_module {found};\n" if found.is_file() else None


def _prepare(prefix: Path) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(exist_ok=True)


def _head(prefix: Path, workers: int, max_connections: int, modules: str = "") -> str:
    """The main context: process, files and events settings every config shares."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""\
# written by benchmarks.baselines.nginx
{modules}{user}daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {max_connections * 2 + 100};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections {max_connections + 100};
    multi_accept on;
}}
"""


def _main_block(prefix: Path, workers: int, max_connections: int) -> str:
    """Everything outside `http {}`, and the http settings both HTTP configs share."""
    return (
        _head(prefix, workers, max_connections)
        + f"""
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_max_body_size 0;
"""
    )


def write_config(
    prefix: Path,
    *,
    port: int,
    upstream_port: int,
    cert_file: Path,
    key_file: Path,
    workers: int = 1,
    max_connections: int = 20000,
) -> Path:
    """nginx.conf for a TLS listener on 127.0.0.1:port proxying to 127.0.0.1:upstream_port."""
    _prepare(prefix)
    conf = (
        _main_block(prefix, workers, max_connections)
        + f"""
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 100000000;
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert_file};
        ssl_certificate_key {key_file};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;

        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering off;
            proxy_buffering on;
            proxy_buffers 16 64k;
            proxy_buffer_size 64k;
            proxy_max_temp_file_size 0;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"""
    )
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def write_static_config(
    prefix: Path, *, port: int, body: bytes, max_connections: int = 20000
) -> Path:
    """nginx.conf for the static backend: plain HTTP on 127.0.0.1:port, `body` (JSON) as the
    answer to every request, whatever its path or method (a request body is read and dropped)."""
    _prepare(prefix)
    text = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    conf = (
        _main_block(prefix, 1, max_connections)
        + f"""
    server_tokens off;

    server {{
        listen 127.0.0.1:{port} backlog=4096;

        location / {{
            default_type application/json;
            return 200 '{text}';
        }}
    }}
}}
"""
    )
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def write_stream_config(
    prefix: Path,
    *,
    port: int,
    upstream_port: int,
    cert_file: Path,
    key_file: Path,
    workers: int = 1,
    max_connections: int = 20000,
) -> Path:
    """nginx.conf for a `stream {}` server terminating TLS on 127.0.0.1:port and relaying the
    bytes to 127.0.0.1:upstream_port (default buffers: 16k each way); raises
    FileNotFoundError when this nginx has no stream module (see `stream_module`)."""
    modules = stream_module()
    if modules is None:
        raise FileNotFoundError("this nginx has no stream module with TLS (libnginx-mod-stream)")
    _prepare(prefix)
    conf = (
        _head(prefix, workers, max_connections, modules)
        + f"""
stream {{
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert_file};
        ssl_certificate_key {key_file};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:STREAM:10m;
        proxy_pass 127.0.0.1:{upstream_port};
        proxy_timeout 300s;
    }}
}}
"""
    )
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def command(prefix: Path, conf: Path) -> list[str]:
    path = binary()
    if path is None:
        raise FileNotFoundError("nginx is not installed")
    return [path, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
