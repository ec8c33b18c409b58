"""Stream fixtures: certificates for servers and clients, upstreams, and in-process gateways.

Everything listens on 127.0.0.1, port 0; upstreams are real asyncio servers in the test's
loop, each connection handled by the coroutine the test gives, which sees real EOFs. The loop
is uvloop's, as in a worker: its transports differ from asyncio's where a relay notices (when
reading starts, whether a TLS transport half-closes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomli_w
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeauth import tls
from edgeauth.bootstrap import prepare_store
from edgeauth.config import Settings, load_settings
from edgeauth.config.checks import stream_addresses
from edgeauth.server import Gateway
from edgeauth.supervisor import bind
from tests.conftest import write_config


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}


def write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    """`cert` and its unencrypted `key` as PEM files stem.crt and stem.key: (cert, key)."""
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass(frozen=True)
class Issuer:
    """A throw-away CA that signs server and client certificates into `directory`."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ca_file: Path
    directory: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / f"{name}.crt"
        ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(name, key, cert, ca_file, directory)

    def issue(
        self, file_name: str, subject: dict[str, str], sans: list[str], *, client: bool = False
    ) -> tuple[Path, Path]:
        """A leaf for `subject` ({"CN": ..., "O": ...}, most specific first, as RFC 4514
        writes it) with DNS or IP `sans`: (cert, key)."""
        oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(oids[k], v) for k, v in reversed(subject.items())])
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return write_pair(self.directory, file_name, builder.sign(self.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Certs:
    servers: Issuer  # signs the gateway's per-stream certificates
    clients: Issuer  # the client_ca_file of mTLS streams
    strangers: Issuer  # a CA no stream trusts
    a: tuple[Path, Path]  # a.example
    b: tuple[Path, Path]  # b.example
    studio: tuple[Path, Path]  # client CN=studio,O=Acme
    other: tuple[Path, Path]  # client CN=other,O=Acme
    stranger: tuple[Path, Path]  # client CN=studio,O=Acme from the stranger CA
    upstream: tuple[Path, Path]  # a TLS upstream's, for 127.0.0.1

    def client(
        self, *, server_ca: Path | None = None, cert: tuple[Path, Path] | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(server_ca or self.servers.ca_file))
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("stream-certs")
    servers = Issuer.create(directory, "servers")
    clients = Issuer.create(directory, "clients")
    strangers = Issuer.create(directory, "strangers")
    studio = {"CN": "studio", "O": "Acme"}
    return Certs(
        servers,
        clients,
        strangers,
        servers.issue("a", {"CN": "a.example"}, ["a.example"]),
        servers.issue("b", {"CN": "b.example"}, ["b.example"]),
        clients.issue("studio", studio, ["studio.example"], client=True),
        clients.issue("other", {"CN": "other", "O": "Acme"}, [], client=True),
        strangers.issue("stranger", studio, [], client=True),
        servers.issue("upstream", {"CN": "upstream"}, ["127.0.0.1"]),
    )


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Upstream:
    """A real TCP (or TLS) server; `connections` counts the connections it accepted."""

    port: int
    server: asyncio.Server
    connections: int = 0
    received: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Writes back what it reads; ends its side at the client's EOF."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """`await upstream(handler, ssl=None)`: a server on a port of its own."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler = echo, ssl_context: ssl.SSLContext | None = None) -> Upstream:
        box: list[Upstream] = []

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            box[0].connections += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, ssl.SSLError):
                writer.close()

        server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=ssl_context)
        servers.append(server)
        box.append(Upstream(server.sockets[0].getsockname()[1], server))
        return box[0]

    yield start
    for server in servers:
        server.close()


@dataclass
class StreamGateway:
    gateway: Gateway
    settings: Settings
    directory: Path
    ports: list[int]  # one per stream_addresses(settings)

    @property
    def port(self) -> int:
        return self.ports[0]

    async def log(self, count: int = 1, within: float = 5.0) -> list[dict[str, Any]]:
        """The stream lines of the access log, once there are at least `count`."""
        deadline = time.monotonic() + within
        while True:
            self.gateway.access_log.flush()
            await asyncio.sleep(0.05)  # the writer thread appends the flushed batch
            path = self.directory / "access.log"
            lines = path.read_bytes().splitlines() if path.exists() else []
            found = [e for e in map(orjson.loads, lines) if e.get("type") == "stream"]
            if len(found) >= count or time.monotonic() > deadline:
                return found


@pytest.fixture
async def streams(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> AsyncIterator[Callable[..., Awaitable[StreamGateway]]]:
    """`await streams([{stream table}, ...], **server_keys)`: an in-process gateway serving
    them (every stream listening on 127.0.0.1:0 unless it says otherwise)."""
    started: list[Gateway] = []

    async def start(tables: list[dict[str, Any]], **server: Any) -> StreamGateway:
        path = write_config(tmp_path, dev_cert, [], **server)
        tables = [{"listen": "127.0.0.1:0", **table} for table in tables]
        doc = tomllib.loads(path.read_text())
        path.write_text(tomli_w.dumps({**doc, "streams": tables}))
        settings = load_settings(path)
        await prepare_store(settings)
        socks = [bind(address) for address in stream_addresses(settings)]
        gateway = Gateway(settings)
        await gateway.start([], [], [], socks)
        started.append(gateway)
        return StreamGateway(gateway, settings, tmp_path, [s.getsockname()[1] for s in socks])

    yield start
    for gateway in started:
        await gateway.stop(1.0)


async def read_all(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything until EOF (or until the connection fails: what came before)."""
    chunks = []
    try:
        async with asyncio.timeout(within):
            while data := await reader.read(65536):
                chunks.append(data)
    except (ConnectionError, ssl.SSLError):
        pass
    return b"".join(chunks)
