"""The harness's engine: one `Bench` owns a work directory, a certificate, the backends and
the baselines (each started on first use) and the gateways under test, and measures loads
against any of them. Leaving it stops every process it started, whatever happened.

Backends: throughput scenarios use the static backend (nginx serving a fixed JSON body when
installed, else `baselines/static_backend.py`), which costs nearly nothing, so that it never
sets the pace; the stream scenario uses `baselines/static_backend.py` always, for its zero-byte
downloads and its counting upload sink; stream-tcp a raw TCP sink, source and echo
(`baselines/tcp_upstream.py`), behind TLS-terminating TCP relays.

Layout (pinning): with more than one core, the generator and the backends share the first
half of the cores and the server under test (edgeauth, nginx, the floor and naive proxies, or
a backend itself when it is measured directly) gets the other half, as in perf-notes.md.
With one core, or with --no-pin, nothing is pinned. Each measured run records how busy the
generator's cores were: past 90 % the figure is the generator's, not the server's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import statistics
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from benchmarks import loadgen, mypyc_build
from benchmarks.baselines import nginx as nginx_baseline
from benchmarks.baselines import static_backend
from benchmarks.procs import Proc, Processes, Watch, free_port, pinned_to, wait_port
from benchmarks.profiles import Profile
from benchmarks.results import GENERATOR_LIMIT, Measurement, ScenarioResult, Skip
from edgeauth.tls import DevCertificate, generate_dev_certificate

SECRET = "bench-secret"
PROVISION = "bench-provision-key"
CLIENT_ID = "bench"
PROTECTED_PATH = "/api/events"  # through the protected route, to the backend's /api/events
PUBLIC_PATH = "/public/events"  # through the public route, to the same /api/events
TOKEN_PATH = "/api/oauth2/token"
STATIC = "static"  # the backend of the throughput scenarios: fixed JSON, nearly free
BYTES = "bytes"  # baselines/static_backend.py whatever is installed: downloads, the upload sink
TCP = "tcp"  # baselines/tcp_upstream.py: raw TCP sink, source and echo (stream-tcp)
ACCESS_LOG = "access.log"  # the gateways log to this file in their directory, as users run them


@dataclass(frozen=True)
class Layout:
    pinned: bool
    generator: tuple[int, ...]
    server: tuple[int, ...]
    backend: tuple[int, ...]
    cores: int

    def describe(self) -> str:
        if not self.pinned:
            return f"unpinned: generator, backend and server share {self.cores} core(s)"
        return (
            f"pinned: generator on CPU {_cpus(self.generator)} with the backend, "
            f"server under test alone on CPU {_cpus(self.server)}"
        )


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def make_layout(pin: bool) -> Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Layout(False, (), (), (), len(cpus))
    half = len(cpus) // 2
    gen = tuple(cpus[:half])
    return Layout(True, gen, tuple(cpus[half:]), gen, len(cpus))


UNPINNED = Layout(False, (), (), (), len(os.sched_getaffinity(0)))


@dataclass
class Server:
    """Something to measure: its base URL and the processes whose cost is counted."""

    name: str
    base_url: str
    procs: list[Proc]
    token: str | None = None  # a bearer token it accepts, if it checks any

    def pids(self) -> list[int]:
        return [pid for proc in self.procs for pid in proc.pids()]

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def address_port(self) -> int:
        return urllib.parse.urlsplit(self.base_url).port or 0


@dataclass
class Gateway(Server):
    """An `edgeauth serve` under test."""

    directory: Path = Path()
    config: Path = Path()
    doc: dict[str, Any] = field(default_factory=dict)
    admin_url: str = ""
    workers: int = 1
    port: int = 0
    admin_port: int = 0
    ssl_context: ssl.SSLContext | None = None

    @property
    def admin_token(self) -> str:
        return (self.directory / "admin.token").read_text().strip()

    def mint_token(self, grant: str = "password", user: str = "bench-user") -> str:
        form = {"grant_type": grant, "client_id": CLIENT_ID, "client_secret": SECRET}
        if grant == "password":
            form |= {"provision_key": PROVISION, "authenticated_userid": user}
        answer = self.post_form(TOKEN_PATH, form)
        return str(answer["access_token"])

    def post_form(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.url(path), data=data, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, context=self.ssl_context, timeout=30) as resp:  # noqa: S310
            parsed: dict[str, Any] = json.loads(resp.read())
        return parsed

    def get(self, path: str, token: str | None = None) -> int:
        """One GET on a fresh connection; the status."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url(path), headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self.ssl_context, timeout=30) as resp:  # noqa: S310
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.read()
            exc.close()
            return int(exc.code)


def gateway_doc(
    directory: Path,
    certs: DevCertificate,
    *,
    backend_port: int,
    port: int,
    admin_port: int,
    workers: int,
    access_log: str,
    server: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
    streams: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The benchmark configuration: a protected route /api and a public route /public to the
    same backend, one consumer and application, access log as asked, and `streams` (the
    [[streams]] tables) when given."""
    doc: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "workers": workers,
            "tls_cert_file": str(certs.cert_file),
            "tls_key_file": str(certs.key_file),
            "max_connections": 20000,
            "keepalive_timeout_seconds": 300,
            "drain_seconds": 1,
            **(server or {}),
        },
        "admin": {
            "listen": f"127.0.0.1:{admin_port}",
            "token_file": str(directory / "admin.token"),
        },
        "status": {"listen": ""},  # no health listener: its default port may be taken
        "store": store or {"path": str(directory / "edgeauth.db")},
        "cache": {**(cache or {})},
        "log": {"access_log": access_log, "level": "warning"},
        "services": [
            {
                "name": "api",
                "url": f"http://127.0.0.1:{backend_port}",
                "max_request_body_bytes": 0,
                "routes": [{"name": "api", "paths": ["/api"], "strip_path": False}],
                "oauth2": {
                    "provision_key": PROVISION,
                    "scopes": ["read", "write"],
                    "enable_password_grant": True,
                    "enable_client_credentials": True,
                },
            },
            {
                "name": "public",
                "url": f"http://127.0.0.1:{backend_port}/api",
                "max_request_body_bytes": 0,
                "routes": [{"name": "public", "paths": ["/public"], "strip_path": True}],
            },
        ],
        "consumers": [
            {
                "username": "bench",
                "oauth2": [
                    {
                        "name": "bench",
                        "client_id": CLIENT_ID,
                        "client_secret": SECRET,
                        "redirect_uris": ["https://bench.example/cb"],
                    }
                ],
            }
        ],
    }
    if streams:
        doc["streams"] = streams
    return doc


def progress(text: str) -> None:
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


class Bench:
    """The shared state of one harness run. Use as a context manager."""

    def __init__(
        self,
        profile: Profile,
        workdir: Path,
        *,
        tool: str = "auto",
        pin: bool = True,
        static: str = "auto",
        say: Callable[[str], None] = progress,
        mypyc: bool = True,
    ) -> None:
        self.profile = profile
        # the optional compiled build (`make mypyc`), measured beside pure Python when present
        self.mypyc = mypyc_build.status() if mypyc else None
        self.workdir = workdir
        self.say = say
        if tool == "auto":
            tool = "wrk" if loadgen.have_wrk() else "builtin"
        if tool == "wrk" and not loadgen.have_wrk():
            raise SystemExit("wrk is not installed")
        self.tool = tool
        if static == "auto":
            static = "nginx" if nginx_baseline.binary() is not None else "python"
        if static == "nginx" and nginx_baseline.binary() is None:
            raise SystemExit("nginx is not installed")
        self.static = static
        self.layout = make_layout(pin)
        self.procs = Processes(workdir / "logs")
        self.certs = generate_dev_certificate(workdir / "certs")
        self.client_ssl = ssl.create_default_context(cafile=str(self.certs.ca_file))
        self.backends: dict[str, Server] = {}
        self.backend_names: dict[str, str] = {}  # kind -> what serves it, for the report
        self._baselines: dict[tuple[str, str], Server] = {}
        self._gateways = 0
        self.configs: dict[str, str] = {}  # name -> TOML, for the report

    # -- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.procs.close()

    def backend(self, kind: str = STATIC) -> Server:
        """The static or the bytes backend, on the generator's cores (started on first use)."""
        if kind in self.backends:
            return self.backends[kind]
        port = free_port()
        scheme = "http"
        if kind == TCP:
            name = "benchmarks.baselines.tcp_upstream (uvloop, raw TCP sink, source and echo)"
            command = [sys.executable, "-m", "benchmarks.baselines.tcp_upstream"]
            command += ["--port", str(port)]
            scheme = "tcp"
        elif kind == STATIC and self.static == "nginx":
            name = f"nginx {nginx_baseline.version()} serving a fixed JSON body"
            prefix = self.workdir / "static-nginx"
            conf = nginx_baseline.write_static_config(prefix, port=port, body=static_backend.BODY)
            self.configs["nginx.conf (static backend)"] = conf.read_text()
            command = nginx_baseline.command(prefix, conf)
        else:
            name = "benchmarks.baselines.static_backend (uvloop + httptools, JSON, bytes, sink)"
            command = [sys.executable, "-m", "benchmarks.baselines.static_backend"]
            command += ["--port", str(port)]
        proc = self.procs.start(f"backend-{kind}", command, cpus=self.layout.backend)
        wait_port(port, proc)
        self.backends[kind] = Server("direct", f"{scheme}://127.0.0.1:{port}", [proc])
        self.backend_names[kind] = name
        return self.backends[kind]

    def nginx(self, backend: str = STATIC) -> Server:
        """nginx in front of a backend (started on first use); Skip if not installed."""
        if ("nginx", backend) in self._baselines:
            return self._baselines["nginx", backend]
        if nginx_baseline.binary() is None:
            raise Skip("nginx is not installed (make bench installs it when it can)")
        label = f"proxy to the {backend} backend"
        return self._start_nginx(backend, f"nginx-{backend}", nginx_baseline.write_config, label)

    def nginx_stream(self) -> Server:
        """nginx's `stream {}` module terminating TLS in front of the TCP upstream (started on
        first use); Skip if nginx or its stream module is not installed."""
        if ("nginx", TCP) in self._baselines:
            return self._baselines["nginx", TCP]
        if nginx_baseline.binary() is None:
            raise Skip("nginx is not installed (make bench installs it when it can)")
        if nginx_baseline.stream_module() is None:
            raise Skip(
                "nginx has no stream module with TLS (libnginx-mod-stream; make bench installs "
                "it when it can)"
            )
        label = "stream, TLS to the TCP upstream"
        return self._start_nginx(TCP, "nginx-stream", nginx_baseline.write_stream_config, label)

    def _start_nginx(
        self, backend: str, name: str, write: Callable[..., Path], label: str
    ) -> Server:
        """nginx in front of `backend` with the nginx.conf `write` makes (write_config or
        write_stream_config, which take the same keywords), kept under "nginx.conf (label)";
        its URL is tls:// in front of the TCP upstream, https:// in front of the others."""
        port = free_port()
        prefix = self.workdir / name
        conf = write(
            prefix,
            port=port,
            upstream_port=self.backend(backend).address_port,
            cert_file=self.certs.cert_file,
            key_file=self.certs.key_file,
            workers=max(1, len(self.layout.server)),
        )
        self.configs[f"nginx.conf ({label})"] = conf.read_text()
        proc = self.procs.start(name, nginx_baseline.command(prefix, conf), cpus=self.layout.server)
        wait_port(port, proc)
        scheme = "tls" if backend == TCP else "https"
        self._baselines["nginx", backend] = Server("nginx", f"{scheme}://127.0.0.1:{port}", [proc])
        return self._baselines["nginx", backend]

    def floor_stream(self) -> Server:
        """The floor TLS relay in front of the TCP upstream (started on first use)."""
        if ("floor", TCP) in self._baselines:
            return self._baselines["floor", TCP]
        port = free_port()
        command = [
            *(sys.executable, "-m", "benchmarks.baselines.floor_stream", "--port", str(port)),
            *("--upstream", self.backend(TCP).base_url),
            *("--cert", str(self.certs.cert_file), "--key", str(self.certs.key_file)),
        ]
        proc = self.procs.start("floor-stream", command, cpus=self.layout.server)
        wait_port(port, proc)
        self._baselines["floor", TCP] = Server("floor", f"tls://127.0.0.1:{port}", [proc])
        return self._baselines["floor", TCP]

    def naive(self, backend: str = STATIC) -> Server:
        """The naive aiohttp proxy (started on first use) with a token of its own."""
        return self._python_proxy("naive", "benchmarks.baselines.naive_proxy", backend)

    def floor(self, backend: str = STATIC) -> Server:
        """The floor proxy (started on first use) with a token of its own."""
        return self._python_proxy("floor", "benchmarks.baselines.floor_proxy", backend)

    def _python_proxy(self, name: str, module: str, backend: str) -> Server:
        if (name, backend) in self._baselines:
            return self._baselines[name, backend]
        port = free_port()
        token = secrets.token_urlsafe(32)
        tokens = self.workdir / f"{name}-{backend}-tokens.txt"
        tokens.write_text(token + "\n")
        command = [
            *(sys.executable, "-m", module, "--port", str(port)),
            *("--upstream", self.backend(backend).base_url, "--tokens", str(tokens)),
            *("--cert", str(self.certs.cert_file), "--key", str(self.certs.key_file)),
        ]
        proc = self.procs.start(f"{name}-{backend}", command, cpus=self.layout.server)
        wait_port(port, proc)
        server = Server(name, f"https://127.0.0.1:{port}", [proc], token=token)
        self._baselines[name, backend] = server
        return server

    def direct(self, backend: str = STATIC) -> Server:
        return self.backend(backend)

    @contextlib.contextmanager
    def gateway(
        self,
        *,
        workers: int = 1,
        pinned: bool = True,
        access_log: str = ACCESS_LOG,
        server: dict[str, Any] | None = None,
        cache: dict[str, Any] | None = None,
        name: str = "edgeauth",
        command: Sequence[str] | None = None,
        store: dict[str, Any] | None = None,
        backend: str = STATIC,
        tree: Path | None = None,
        streams: list[dict[str, Any]] | None = None,
    ) -> Iterator[Gateway]:
        """A fresh `edgeauth serve` (own directory, store and ports) in front of `backend`,
        logging each request to a file unless `access_log` is "off"; stopped on leaving.
        `tree`: run the edgeauth package in that directory (a mypyc build or its pure twin,
        benchmarks/mypyc_build.py) instead of this checkout's. `streams`: [[streams]] tables
        (each listener is waited for, as the HTTP one is)."""
        self._gateways += 1
        directory = self.workdir / f"gateway-{self._gateways}"
        directory.mkdir(parents=True)
        port, admin_port = free_port(), free_port()
        if access_log not in ("off", "stdout"):
            access_log = str(directory / access_log)
        doc = gateway_doc(
            directory,
            self.certs,
            backend_port=self.backend(backend).address_port,
            port=port,
            admin_port=admin_port,
            workers=workers,
            access_log=access_log,
            server=server,
            cache=cache,
            store=store,
            streams=streams,
        )
        config = directory / "config.toml"
        config.write_text(tomli_w.dumps(doc))
        variant = [f"workers = {workers}"]
        variant += [f"{k} = {v}" for k, v in (server or {}).items()]
        variant += ["access log off"] if access_log == "off" else []
        variant += [] if backend == STATIC else [f"{backend} backend"]
        variant += [] if command is None else [" ".join(command[1:3])]
        variant += [] if tree is None else [f"from {tree.relative_to(tree.parent.parent)}"]
        variant += [f"{len(streams)} stream(s)"] if streams else []
        self.configs.setdefault(f"edgeauth ({', '.join(variant)})", config.read_text())
        cpus = self.layout.server if pinned else ()
        argv = list(command) if command else [sys.executable, "-m", "edgeauth", "serve"]
        env = None if tree is None else mypyc_build.environment(tree, self.procs.env)
        proc = self.procs.start(
            f"gateway-{self._gateways}", [*argv, "-c", str(config)], cpus=cpus, env=env
        )
        try:
            gw = Gateway(
                name,
                f"https://127.0.0.1:{port}",
                [proc],
                directory=directory,
                config=config,
                doc=doc,
                admin_url=f"http://127.0.0.1:{admin_port}",
                workers=workers,
                port=port,
                admin_port=admin_port,
                ssl_context=self.client_ssl,
            )
            self._await_gateway(gw, proc, admin=command is None)
            for stream in streams or []:
                wait_port(urllib.parse.urlsplit(f"//{stream['listen']}").port or 0, proc)
            gw.token = gw.mint_token()
            yield gw
        finally:
            self.procs.stop(proc, grace=self.profile.shutdown_grace)

    def _await_gateway(self, gw: Gateway, proc: Proc, *, admin: bool) -> None:
        wait_port(gw.port, proc)
        if admin:
            wait_port(gw.admin_port, proc)
        deadline = time.monotonic() + 30
        while len(proc.pids()) < 1 + gw.workers and gw.workers > 1:
            if time.monotonic() > deadline or not proc.alive():
                raise RuntimeError(f"gateway workers did not start:\n{proc.log_tail()}")
            time.sleep(0.05)
        # Fresh connections land on every worker's socket; each answers once it is ready.
        for _ in range(4 * gw.workers):
            status = gw.get(PUBLIC_PATH)
            if status != 200:
                raise RuntimeError(f"gateway answered {status} to a probe:\n{proc.log_tail()}")

    # -- measuring ------------------------------------------------------------------------

    def gen_cpus(self, layout: Layout | None = None) -> tuple[int, ...]:
        return (layout or self.layout).generator

    def measure(
        self,
        target: Server,
        label: str,
        spec: loadgen.LoadSpec,
        *,
        layout: Layout | None = None,
        tool: str | None = None,
        name: str | None = None,
    ) -> Measurement:
        """Warm up (discarded), then one measured load, watching the target's processes."""
        layout = layout or self.layout
        tool = tool or self.tool
        cpus = layout.generator
        with self._as_server_under_test(target, layout):
            if spec.warmup > 0 and spec.rate <= 0:
                warm = loadgen.LoadSpec(**{**spec.__dict__, "duration": spec.warmup, "warmup": 0})
                loadgen.run_load(warm, self.procs, self.workdir, cpus, tool=tool)
            measured = loadgen.LoadSpec(**{**spec.__dict__, "warmup": 0.0})
            watch = Watch(target.pids).start()
            result = loadgen.run_load(measured, self.procs, self.workdir, cpus, tool=tool)
            usage = watch.stop()
        m = self._measurement(name or target.name, label, spec, result, usage, layout)
        rate = f"{m.rps:,.0f} req/s" if m.mb_per_s is None else f"{m.mb_per_s:,.0f} MB/s"
        p99 = f", p99 {m.latency.p99:.2f} ms" if m.latency else ""
        gen = (
            ""
            if m.generator_busy_percent is None
            else f", generator {m.generator_busy_percent:g} %"
        )
        gen += " (saturated)" if m.generator_saturated else ""
        self.say(f"  {m.target:<9} {label}: {rate}{p99}, errors {m.errors}{gen}")
        return m

    def stream(self, target: Server, direction: str, path: str, token: str | None) -> Measurement:
        size = self.profile.stream_bytes
        with self._as_server_under_test(target, self.layout):
            url = target.url(path if direction == "upload" else f"{path}/{size}")
            watch = Watch(target.pids).start()
            result = loadgen.run_stream(
                url, direction, size, self.procs, self.workdir, self.layout.generator, token
            )
            usage = watch.stop()
        spec = loadgen.LoadSpec(url=url, duration=result.duration_s, connections=1)
        label = f"{direction} {_size(size)}"
        m = self._measurement(target.name, label, spec, result, usage, self.layout)
        m.mb_per_s = round(result.bytes / result.duration_s / 1e6, 1) if result.duration_s else 0
        m.latency = None  # one stream: its duration is in duration_s
        m.extra["complete"] = bool(result.extra.get("complete"))
        if not m.extra["complete"]:
            m.errors += 1
        self.say(
            f"  {target.name:<9} {label}: {m.mb_per_s:,.0f} MB/s, peak RSS {m.rss_peak_mib} MiB"
        )
        return m

    def tcp_stream(self, target: Server, direction: str, size: int) -> Measurement:
        """One raw stream of `size` bytes `up` or `down` through `target` (benchmarks.tcpload);
        an incomplete one counts as an error."""
        doc = {"mode": direction, "url": target.base_url, "size": size}
        with self._as_server_under_test(target, self.layout):
            watch = Watch(target.pids).start()
            result = loadgen.run_tcp(doc, self.procs, self.workdir, self.layout.generator)
            usage = watch.stop()
        spec = loadgen.LoadSpec(url=target.base_url, duration=result.duration_s, connections=1)
        m = self._measurement(
            target.name, f"{direction} {_size(size)}", spec, result, usage, self.layout
        )
        m.mb_per_s = round(result.bytes / result.duration_s / 1e6, 1) if result.duration_s else 0
        m.latency = None  # one stream: its duration is in duration_s
        m.extra["complete"] = bool(result.extra.get("complete"))
        self.say(
            f"  {target.name:<9} {m.label}: {m.mb_per_s:,.0f} MB/s, RSS "
            f"{m.rss_start_mib} -> {m.rss_peak_mib} MiB{_generator_note(m)}"
        )
        return m

    def tcp_connections(
        self, target: Server, label: str, clients: int, seconds: float
    ) -> Measurement:
        """New TLS connections per second through `target`: `clients` loops of connect,
        handshake, one small echo and close, for `seconds`."""
        doc = {
            "mode": "connect",
            "url": target.base_url,
            "connections": clients,
            "duration": seconds,
        }
        with self._as_server_under_test(target, self.layout):
            watch = Watch(target.pids).start()
            result = loadgen.run_tcp(doc, self.procs, self.workdir, self.layout.generator)
            usage = watch.stop()
        spec = loadgen.LoadSpec(url=target.base_url, duration=seconds, connections=clients)
        m = self._measurement(target.name, label, spec, result, usage, self.layout)
        p99 = f", p99 {m.latency.p99:.2f} ms" if m.latency else ""
        self.say(
            f"  {target.name:<9} {label}: {m.rps:,.0f} connections/s{p99}, errors {m.errors}"
            f"{_generator_note(m)}"
        )
        return m

    @contextlib.contextmanager
    def _as_server_under_test(self, target: Server, layout: Layout) -> Iterator[None]:
        """A backend moves to the server cores while it is the one measured; in an unpinned
        run the backends share every core."""
        backends = [proc for server in self.backends.values() for proc in server.procs]
        if layout.pinned and any(target is server for server in self.backends.values()):
            with pinned_to(target.procs, layout.server):
                yield
        elif not layout.pinned and self.layout.pinned and backends:
            with pinned_to(backends, sorted(os.sched_getaffinity(0))):
                yield
        else:
            yield

    def _measurement(
        self,
        target: str,
        label: str,
        spec: loadgen.LoadSpec,
        result: loadgen.LoadResult,
        usage: Any,
        layout: Layout,
    ) -> Measurement:
        good = result.expected(spec.expect)
        seconds = result.duration_s or usage.seconds
        generator = [usage.core_busy[c] for c in layout.generator if c in usage.core_busy]
        gen_busy = round(statistics.fmean(generator), 1) if generator else None
        cpu_percent = 100 * usage.cpu_seconds / seconds if seconds > 0 else 0.0
        server_busy = sum(usage.core_busy.get(c, 0.0) for c in layout.server)
        others = round(max(0.0, server_busy - cpu_percent), 1) if layout.pinned else None
        return Measurement(
            target=target,
            label=label,
            tool=result.tool,
            duration_s=round(seconds, 3),
            requests=good,
            errors=result.socket_errors + (result.responses - good),
            statuses=result.statuses,
            rps=round(good / seconds, 1) if seconds > 0 else 0.0,
            latency=result.latency(),
            cpu_seconds=round(usage.cpu_seconds, 3),
            cpu_percent=round(100 * usage.cpu_seconds / seconds, 1) if seconds > 0 else None,
            cpu_us_per_request=round(usage.cpu_seconds * 1e6 / good, 1) if good else None,
            rss_start_mib=_mib(usage.rss_start_kib),
            rss_peak_mib=_mib(usage.rss_peak_kib),
            rss_hwm_mib=_mib(usage.hwm_kib),
            core_busy={str(k): v for k, v in usage.core_busy.items()},
            generator_busy_percent=gen_busy,
            generator_saturated=gen_busy is not None and gen_busy > GENERATOR_LIMIT,
            others_on_server_percent=others,
            layout=layout.describe(),
            command=result.command,
            extra={
                "percentiles": result.percentiles,
                "by_status": {
                    k: result.latency(k).__dict__ for k in result.by_status if result.latency(k)
                },
                **result.extra,
            },
        )


def _generator_note(m: Measurement) -> str:
    if m.generator_busy_percent is None:
        return ""
    return f", generator {m.generator_busy_percent:g} %" + (
        " (saturated)" if m.generator_saturated else ""
    )


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):g} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):g} MiB"
    return f"{n} B"


def run_scenario(
    bench: Bench, name: str, run: Callable[[Bench, ScenarioResult], None], description: str
) -> ScenarioResult:
    """Run one scenario, turning Skip and any failure into a result record."""
    result = ScenarioResult(name=name, description=description, layout=bench.layout.describe())
    bench.say(f"{name}: {description}")
    started = time.monotonic()
    try:
        run(bench, result)
    except Skip as exc:
        result.status = "skipped"
        result.reason = str(exc)
        bench.say(f"  skipped: {exc}")
    except Exception as exc:
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}".strip()[:2000]
        result.notes.append(traceback.format_exc()[-4000:])
        bench.say(f"  FAILED: {result.reason.splitlines()[0] if result.reason else ''}")
    result.seconds = round(time.monotonic() - started, 1)
    return result
