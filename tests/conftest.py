"""Shared fixtures: real TLS certificates, a real sample backend, real gateways.

Everything listens on 127.0.0.1 with port 0 and reads the real port back; the default
listener ports are held for the whole run, so a config that leaves a listener at its default
fails here rather than on a machine where they are in use. A gateway runs either in-process
(`gateway` fixture: fast, same event loop as the test) or as real processes (`ServeProcess`:
`edgeauth serve` with its supervisor and workers), whose stderr a failed start shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import tomli_w
from aiohttp import web

from edgeauth import sample_backend, tls
from edgeauth.bootstrap import prepare_store
from edgeauth.config import Address, Settings, load_settings
from edgeauth.server import Gateway
from edgeauth.supervisor import bind

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = (8001, 8100, 8443)  # [admin] listen, [status] listen, [server] listen


class PortHolder:
    """Holds 127.0.0.1's default listener ports, bound and listening. A port another process
    holds (another run of the suite on this machine) is taken as soon as that one lets it go,
    by a thread that retries every RETRY_SECONDS: the ports stay taken for the whole run."""

    RETRY_SECONDS = 0.1

    def __init__(self, ports: tuple[int, ...]) -> None:
        self._missing = list(ports)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._take()
        self._thread = threading.Thread(target=self._retry, name="port-holder", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        for port in tuple(self._missing):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:  # held by something else for now
                sock.close()
                continue
            self._held.append(sock)
            self._missing.remove(port)

    def _retry(self) -> None:
        while self._missing and not self._stop.wait(self.RETRY_SECONDS):
            self._take()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self._held:
            sock.close()


HELD_PORTS = pytest.StashKey[PortHolder]()


def pytest_configure(config: pytest.Config) -> None:
    """Hold the default listener ports for the whole run: in the process that outlives every
    xdist worker (the controller), or in the only one."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller holds them
        return
    config.stash[HELD_PORTS] = PortHolder(DEFAULT_PORTS)


def pytest_unconfigure(config: pytest.Config) -> None:
    holder = config.stash.get(HELD_PORTS, None)
    if holder is not None:
        holder.close()


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> tls.DevCertificate:
    return tls.generate_dev_certificate(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def client_ssl(dev_cert: tls.DevCertificate) -> ssl.SSLContext:
    """A client context trusting only the test CA, as curl --cacert would."""
    return ssl.create_default_context(cafile=str(dev_cert.ca_file))


@dataclass
class Backend:
    url: str
    port: int
    app: web.Application

    @property
    def stats(self) -> dict[str, int]:
        return self.app[sample_backend.STATS]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    """The sample backend, in-process, on a port of its own."""
    app = sample_backend.make_app()
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Backend(f"http://127.0.0.1:{port}", port, app)
    await runner.cleanup()


def service(name: str, url: str, paths: list[str], **extra: Any) -> dict[str, Any]:
    """A `[[services]]` table with one route named `<name>-route`."""
    route: dict[str, Any] = {"name": f"{name}-route", "paths": paths}
    for key in ("strip_path", "hosts", "methods"):
        if key in extra:
            route[key] = extra.pop(key)
    return {"name": name, "url": url, "routes": [route], **extra}


def write_config(
    directory: Path,
    dev_cert: tls.DevCertificate,
    services: list[dict[str, Any]],
    *,
    consumers: list[dict[str, Any]] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
    **server: Any,
) -> Path:
    """A real config.toml in `directory`; `server` keys override the [server] table,
    `tables` override or add other top-level tables (e.g. {"cache": {...}})."""
    doc: dict[str, Any] = {
        "server": {
            "listen": "127.0.0.1:0",
            "tls_cert_file": str(dev_cert.cert_file),
            "tls_key_file": str(dev_cert.key_file),
            **server,
        },
        "log": {"access_log": str(directory / "access.log"), "level": "info"},
        "store": {"path": str(directory / "edgeauth.db")},
        "admin": {"token_file": str(directory / "admin.token"), "listen": "127.0.0.1:0"},
        "status": {"listen": "127.0.0.1:0"},
        "services": services,
    }
    for name, table in (tables or {}).items():
        doc[name] = {**doc.get(name, {}), **table}
    if consumers:
        doc["consumers"] = consumers
    path = directory / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def edgeauth_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`edgeauth ARGS...` in a subprocess of this interpreter: exit status, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "edgeauth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_access_log(directory: Path) -> list[dict[str, Any]]:
    path = directory / "access.log"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@dataclass
class RunningGateway:
    url: str
    port: int
    gateway: Gateway
    settings: Settings
    directory: Path
    admin_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def admin_token(self) -> str:
        return self.settings.admin.token_file.read_text().strip()

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def access_log(self) -> list[dict[str, Any]]:
        self.gateway.access_log.flush()
        time.sleep(0.05)  # the writer thread appends the flushed batch
        return read_access_log(self.directory)


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


class Clock:
    """The wall clock of the in-process gateways: real time, plus whatever the test has moved
    it on by, so a test lets a token expire without sleeping until it does."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def gateway(
    tmp_path: Path, dev_cert: tls.DevCertificate, clock: Clock
) -> AsyncIterator[GatewayFactory]:
    """Start an in-process gateway on `clock`: `await gateway(services, **server_keys)`."""
    started: list[Gateway] = []

    async def start(
        services: list[dict[str, Any]],
        *,
        consumers: list[dict[str, Any]] | None = None,
        tables: dict[str, dict[str, Any]] | None = None,
        **server: Any,
    ) -> RunningGateway:
        path = write_config(
            tmp_path, dev_cert, services, consumers=consumers, tables=tables, **server
        )
        settings = load_settings(path)
        await prepare_store(settings)
        sock = bind(Address("127.0.0.1", 0))
        admin = bind(Address("127.0.0.1", 0))
        port = sock.getsockname()[1]
        gw = Gateway(settings, clock=clock)
        await gw.start([sock], [], [admin])
        started.append(gw)
        admin_url = f"http://127.0.0.1:{admin.getsockname()[1]}"
        return RunningGateway(
            f"https://127.0.0.1:{port}", port, gw, settings, tmp_path, admin_url=admin_url
        )

    yield start
    for gw in started:
        await gw.stop(1.0)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> bool:
    """Whether `check` comes true before a deadline, asked every 50 ms: for what another
    process does in its own time, where a fixed sleep would be a guess."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
async def client(client_ssl: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTPS client trusting the test CA, sending exactly the headers it is given."""
    connector = aiohttp.TCPConnector(ssl=client_ssl, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:
        yield session


async def raw_exchange(
    port: int, client_ssl: ssl.SSLContext, request: bytes, *, read_timeout: float = 10.0
) -> bytes:
    """Send raw bytes over TLS and read until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost"
    )
    writer.write(request)
    await writer.drain()
    chunks: list[bytes] = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
    return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return orjson.loads(response.partition(b"\r\n\r\n")[2])


class ServeProcess:
    """`edgeauth serve` as a real process tree (supervisor + workers)."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=config.parent,
        )
        self.log: list[dict[str, Any]] = []
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            assert self.proc.stderr is not None
            self.proc.stderr.close()
            raise
        self.port = int(self.url.rsplit(":", 1)[1])
        # Keep draining stderr so that a chatty process never blocks on a full pipe.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.log.append(orjson.loads(line))

    def _wait_ready(self, timeout: float = 30.0) -> str:
        """The first proxy URL of the "ready" line; a failed start raises with the stderr."""
        assert self.proc.stderr is not None
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                code = self.proc.wait()
                raise RuntimeError(f"edgeauth serve exited with {code}:\n{_text(seen)}")
            seen.append(line)
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a plain-text line (a usage or config error): kept for the message
            if not isinstance(entry, dict):
                continue
            self.log.append(entry)
            if entry.get("msg") == "ready":
                return str(entry["listen"][0])
        raise RuntimeError(f"edgeauth serve did not become ready:\n{_text(seen)}")

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._drainer.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


def _text(lines: list[bytes]) -> str:
    return b"".join(lines).decode(errors="replace")


@pytest.fixture
def serve() -> Iterator[Callable[..., ServeProcess]]:
    """Start `edgeauth serve` processes; whatever is left is stopped at the end."""
    procs: list[ServeProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(config, env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop(signal.SIGKILL)


def free_port_refused() -> int:
    """A port on which nothing listens (bound then closed, so connects are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
