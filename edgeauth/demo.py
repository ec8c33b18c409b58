"""`edgeauth demo` (what `make run` starts): the sample backend plus the gateway, and the
curl commands to try against them. For trying edgeauth out, not for production.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from edgeauth.bootstrap import policy_for
from edgeauth.config import Settings
from edgeauth.routing import public_base

STARTUP_SECONDS = 30.0


def _wait_for_port(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def _backend_address(settings: Settings) -> tuple[str, int]:
    """The sample backend serves the first service's upstream host and port."""
    if not settings.services:
        return "127.0.0.1", 52773
    parts = urlsplit(settings.services[0].url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _public_lines(settings: Settings, curl: str) -> list[str]:
    lines: list[str] = []
    for service in settings.services:
        if service.oauth2 is None:
            base = public_base(settings.server, service)
            for route in service.routes:
                for path in route.paths:
                    lines.append(f"  {curl} {base}{path.rstrip('/')}/echo")
    return lines


def _walkthrough(settings: Settings, curl: str) -> list[str]:
    """The seed walkthrough's three commands, runnable as printed (sed pulls the tokens)."""
    service = next((s for s in settings.services if s.oauth2 is not None), None)
    cred = next((c for consumer in settings.consumers for c in consumer.oauth2), None)
    if service is None or cred is None or not cred.client_secret:
        return []
    policy = policy_for(service)
    if policy is None:
        return []
    base = public_base(settings.server, service)
    path = service.routes[0].paths[0].rstrip("/")
    token_url = f"{base}{path}/oauth2/token"
    json_type = "-H 'Content-Type: application/json'"
    login = (
        f'{{"client_id":"{cred.client_id}","client_secret":"{cred.client_secret}",'
        f'"grant_type":"password","provision_key":"{policy.provision_key}",'
        f'"authenticated_userid":"1"}}'
    )
    pick = 'sed -E \'s/.*"{0}":"([^"]*)".*/\\1/\''
    refresh = (
        f'"{{\\"client_id\\":\\"{cred.client_id}\\",'
        f'\\"client_secret\\":\\"{cred.client_secret}\\",'
        f'\\"grant_type\\":\\"refresh_token\\",'
        f'\\"refresh_token\\":\\"$(echo "$R" | {pick.format("refresh_token")})\\"}}"'
    )
    return [
        "The walkthrough (password grant, bearer call, refresh):",
        f"  R=$({curl} -s {token_url} {json_type} -d '{login}'); echo \"$R\"",
        f'  {curl} -s {base}{path} -H "Authorization: Bearer '
        f'$(echo "$R" | {pick.format("access_token")})"',
        f"  {curl} -s {token_url} {json_type} -d {refresh}",
        "",
    ]


def _tour(settings: Settings) -> str:
    ca = settings.server.tls_cert_file.parent / "dev-ca.crt"
    curl = f"curl --cacert {ca}"
    lines = [f"edgeauth is serving on {public_base(settings.server)}", ""]
    lines += _walkthrough(settings, curl)
    public = _public_lines(settings, curl)
    if public:
        lines += ["Public routes (no token):", *public, ""]
    admin = settings.admin.listen
    token = settings.admin.token_file
    lines += [
        "Admin API, status and metrics (token in " + str(token) + "):",
        f'  curl -H "Authorization: Bearer $(cat {token})" http://{admin.host}:{admin.port}/status',
        f'  curl -H "Authorization: Bearer $(cat {token})" http://{admin.host}:{admin.port}/metrics',
        "  edgeauth consumers list   # the admin CLI (.venv/bin/edgeauth)",
        _console_line(settings),
        "Logs: JSON lines; the access log on stdout, the process log on stderr (below).",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _console_line(settings: Settings) -> str:
    """Where the admin console is, or how to turn it on (it is off by default)."""
    admin = settings.admin.listen
    scheme = "https" if settings.admin.tls_cert_file is not None else "http"
    url = f"{scheme}://{admin.host}:{admin.port}/ui/"
    if settings.admin.ui:
        return f"Admin console: {url} (sign in with the admin token)"
    return f"Admin console: set [admin] ui = true in the config, then {url}"


def run_demo(settings: Settings, config: Path) -> int:
    """Start the sample backend and `edgeauth serve`; stop both on Ctrl-C or SIGTERM."""
    host, port = _backend_address(settings)
    backend = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "edgeauth.sample_backend", "--host", host, "--port", str(port)]
    )
    gateway = subprocess.Popen([sys.executable, "-m", "edgeauth", "serve", "-c", str(config)])  # noqa: S603
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + STARTUP_SECONDS
    listen = settings.server.listen[0]
    probe_host = "127.0.0.1" if listen.host in ("0.0.0.0", "") else listen.host  # noqa: S104
    if _wait_for_port(probe_host, listen.port, deadline):
        sys.stdout.write(_tour(settings) + "\n")
        sys.stdout.flush()
    while not stopping and gateway.poll() is None and backend.poll() is None:
        time.sleep(0.2)
    for proc in (gateway, backend):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in (gateway, backend):
        proc.wait()
    return 0 if stopping else 1
