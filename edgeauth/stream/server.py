"""The stream listeners of one worker: choose a stream per connection, terminate or pass TLS on,
connect the upstream, relay (relay.py), and account for each connection once.

Rule 1: accepting is listener.py's (AcceptLoop: slots, one task per connection until it
relays, the handshake timeout). A listener's slots are the sum of its streams' max_connections,
so a listener of one stream queues the excess in the kernel's backlog; a stream sharing a
listener waits for one of its own slots within the handshake timeout, or the connection is
closed ("max_connections").
Rule 2: on a TLS listener the ClientHello is peeked at (MSG_PEEK, never consumed: the TLS
layer or a passthrough upstream reads it whole), again only when more bytes have arrived, bounded
by MAX_HELLO_BYTES and by the handshake timeout, which also bounds the handshake that follows
(either one expiring is "timeout"). The stream is the one naming the SNI
exactly, else a wildcard one, else the listener's default (the stream without server_names);
no stream: the connection is closed ("no_route").
Rule 3: a terminating stream does the handshake with its own SSLContext (its certificate, its
client CA), so mutual TLS is enforced per stream by the handshake itself; allowed_subjects and
allowed_sans are checked right after it, before any upstream is connected.
Rule 4: the upstream is connected once the client is accepted and authenticated, within
connect_timeout_seconds; refused, unreachable or too slow: the client is closed at once, the
reason in its log line and in the process log.
Rule 5: every accepted connection ends in `_closed`, exactly once: slots given back, one access
log line, the metrics; byte counts of live connections reach the metrics every FLUSH_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeauth import tls
from edgeauth.config import Address, ServerSettings, Settings, StreamSettings
from edgeauth.config.checks import stream_addresses
from edgeauth.config.schema import stream_upstream
from edgeauth.listener import AcceptLoop, readable
from edgeauth.logs import AccessLog
from edgeauth.metrics import Recorder
from edgeauth.stream.clienthello import MAX_HELLO_BYTES, NEED_MORE, NotClientHello, server_name
from edgeauth.stream.peer import certificate_allowed, server_name_matches, subject_text
from edgeauth.stream.proxy_header import proxy_header, proxy_header_unknown
from edgeauth.stream.relay import Relay

log = logging.getLogger(__name__)

PEEK_RETRY_SECONDS = 0.01  # woken with no new byte of the ClientHello: peeked again after this,
MAX_PEEK_RETRY_SECONDS = 0.5  # doubled each time up to this
TIMER_SLACK_SECONDS = 0.001  # uvloop's timers run on a millisecond clock
RECORD_HEADER = 5  # a TLS record's type, version and length


class Refused(Exception):
    """A connection closed before relaying; `reason` is a fixed word (a metric label)."""

    def __init__(self, reason: str, error: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def server_ssl(stream: StreamSettings, server: ServerSettings) -> ssl.SSLContext | None:
    """The context a terminating stream does its handshakes with (None: it terminates none)."""
    if not stream.tls or stream.passthrough:
        return None
    cert = stream.tls_cert_file or server.tls_cert_file
    key = stream.tls_key_file or server.tls_key_file
    ctx = tls.server_context(cert, key, server.tls_min_version, alpn=False)
    if stream.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(stream.client_ca_file)
    return ctx


def upstream_ssl(stream: StreamSettings) -> ssl.SSLContext | None:
    """The context a tls:// upstream is connected with (None for tcp://)."""
    if stream_upstream(stream.upstream)[0] != "tls":
        return None
    return tls.upstream_context(stream.tls_verify, stream.ca_file)


def context_problems(settings: Settings) -> list[str]:
    """Streams whose certificates do not load: what a reload refuses (bootstrap.py)."""
    problems = []
    for i, stream in enumerate(settings.streams):
        try:
            server_ssl(stream, settings.server)
            upstream_ssl(stream)
        except (OSError, ssl.SSLError) as exc:
            problems.append(
                f"{settings.source.name}: streams[{i}]: a certificate, key or CA file does not"
                f" load: {exc}"
            )
    return problems


@dataclass(slots=True)
class Route:
    """One stream as a worker serves it."""

    settings: StreamSettings
    server_ssl: ssl.SSLContext | None
    upstream_ssl: ssl.SSLContext | None
    host: str
    port: int
    slots: asyncio.Semaphore
    active: int = 0

    @classmethod
    def build(cls, stream: StreamSettings, server: ServerSettings) -> Route:
        _, host, port = stream_upstream(stream.upstream)
        return cls(
            stream,
            server_ssl(stream, server),
            upstream_ssl(stream),
            host,
            port,
            asyncio.Semaphore(stream.max_connections),
        )


@dataclass(slots=True)
class Routes:
    """The streams of one listen address, by the SNI name they answer to (Rule 2)."""

    exact: dict[str, Route] = field(default_factory=dict)
    wildcards: list[tuple[str, Route]] = field(default_factory=list)
    default: Route | None = None
    tls: bool = True  # peek at a ClientHello (false: one plain stream, nothing to choose)
    capacity: int = 0  # the listener's slots: its streams' max_connections (Rule 1)

    def add(self, route: Route) -> None:
        names = route.settings.server_names
        self.tls = route.settings.tls
        self.capacity += route.settings.max_connections
        if not names:
            self.default = route
        for name in names:
            if name.startswith("*."):
                self.wildcards.append((name, route))
            else:
                self.exact[name] = route

    def choose(self, name: str | None) -> Route | None:
        if name is None:
            return self.default
        route = self.exact.get(name)
        if route is not None:
            return route
        for pattern, candidate in self.wildcards:
            if server_name_matches(pattern, name):
                return candidate
        return self.default


def _name(address: Any) -> str:
    """A socket address as the log shows it: "host:port", "[v6]:port" (Address's form)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(Address(str(address[0]), address[1]))
    return str(address)


@dataclass(slots=True, eq=False)
class Connection:
    """One accepted connection, from accept to its log line (logs.Entry)."""

    peer: str
    started: float  # perf_counter
    stream: str = ""
    sni: str | None = None
    client_subject: str | None = None
    reason: str = ""
    error: str = ""
    failure: str | None = None  # refused before relaying: the handshake-failure label
    relay: Relay | None = None
    route: Route | None = None  # holds one of the route's slots while set
    listener_slots: asyncio.Semaphore | None = None  # holds one of its listener's slots
    counted_in: int = 0
    counted_out: int = 0
    logged_ns: int = 0
    path: str = ""  # logs.Entry: a stream has no path
    duration_ms: float = 0.0

    def entry(self, worker: int) -> dict[str, Any]:
        relay = self.relay
        fields: dict[str, Any] = {
            "level": "info",
            "type": "stream",
            "stream": self.stream,
            "peer": self.peer,
            "sni": self.sni,
            "client_subject": self.client_subject,
            "bytes_in": relay.bytes_in if relay else 0,
            "bytes_out": relay.bytes_out if relay else 0,
            "duration_ms": round(self.duration_ms, 3),
            "close_reason": self.reason,
            "worker": worker,
        }
        if self.error:
            fields["error"] = self.error
        return fields


class StreamListener(AcceptLoop):
    """Accepts the connections of one stream listen address (Rule 1)."""

    def __init__(
        self, sock: socket.socket, routes: Routes, owner: Streams, handshake_timeout: float
    ) -> None:
        super().__init__(
            sock,
            handshake_timeout=handshake_timeout,
            slots=asyncio.Semaphore(routes.capacity),
        )
        self._routes = routes
        self._owner = owner

    async def _serve(self, conn: socket.socket) -> None:
        try:
            peer = _name(conn.getpeername())
        except OSError:
            peer = ""
        record = Connection(peer, time.perf_counter(), listener_slots=self._slots)
        self._owner.opened(record)
        try:
            await self._connect(conn, record)
        except Refused as refused:
            self._owner.refuse(record, conn, refused)
        except Exception:  # a bug: this connection ends, the worker serves on
            log.exception("stream connection failed", extra={"fields": {"stream": record.stream}})
            self._owner.refuse(record, conn, Refused("error", "internal error"))
        except BaseException:  # cancelled: the worker is going away
            self._owner.refuse(record, conn, Refused("shutdown"))
            raise

    async def _connect(self, conn: socket.socket, record: Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handshake_timeout
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with asyncio.timeout_at(deadline):
                if self._routes.tls:
                    record.sni = await _hello_name(conn)
                route = self._routes.choose(record.sni)
                if route is None:
                    raise Refused("no_route")
                record.stream = route.settings.name
                await route.slots.acquire()
        except TimeoutError:
            raise Refused("max_connections" if record.stream else "timeout") from None
        record.route = route
        relay = Relay(loop, route.settings.idle_timeout_seconds, self._owner.relayed(record))
        record.relay = relay
        await self._handshake(conn, route, relay, deadline)
        if route.server_ssl is not None and route.settings.client_ca_file is not None:
            self._authorize(route, relay, record)
        await self._upstream(route, relay, record)

    async def _handshake(
        self, conn: socket.socket, route: Route, relay: Relay, deadline: float
    ) -> None:
        """The client's transport: TLS terminated with the stream's own context (Rule 3)."""
        loop = asyncio.get_running_loop()
        context = route.server_ssl
        try:
            await loop.connect_accepted_socket(
                lambda: relay.client,
                conn,
                ssl=context,
                ssl_handshake_timeout=self._remaining(deadline) if context else None,
            )
        except ssl.SSLError as exc:
            raise Refused(_tls_failure(exc), exc.reason or str(exc)) from None
        except OSError as exc:  # the TLS layer ends a handshake past its timeout with one
            reason = "timeout" if loop.time() >= deadline - TIMER_SLACK_SECONDS else "closed"
            raise Refused(reason, exc.strerror or str(exc)) from None
        if relay.client.transport is None:  # gone as soon as made
            raise Refused("closed")

    @staticmethod
    def _authorize(route: Route, relay: Relay, record: Connection) -> None:
        transport = relay.client.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if not cert:
            raise Refused("no_client_certificate")
        record.client_subject = subject_text(cert)
        stream = route.settings
        if (stream.allowed_subjects or stream.allowed_sans) and not certificate_allowed(
            cert, stream.allowed_subjects, stream.allowed_sans
        ):
            raise Refused("subject_not_allowed", record.client_subject)

    async def _upstream(self, route: Route, relay: Relay, record: Connection) -> None:
        """Connect the upstream (Rule 4), then start relaying, a PROXY header first."""
        loop = asyncio.get_running_loop()
        stream = route.settings
        context = route.upstream_ssl
        try:
            async with asyncio.timeout(stream.connect_timeout_seconds):
                await loop.create_connection(
                    lambda: relay.upstream,
                    route.host,
                    route.port,
                    ssl=context,
                    server_hostname=route.host if context else None,
                )
        except TimeoutError:
            _unreachable(
                relay, record, "upstream_timeout", f"connect timed out ({route.host}:{route.port})"
            )
            return
        except ssl.SSLError as exc:
            _unreachable(relay, record, "upstream_tls_error", exc.reason or str(exc))
            return
        except OSError as exc:
            reason = (
                "upstream_refused" if isinstance(exc, ConnectionRefusedError) else "upstream_down"
            )
            words = os.strerror(exc.errno) if exc.errno else str(exc)
            _unreachable(relay, record, reason, f"{words} ({route.host}:{route.port})")
            return
        version = stream.proxy_protocol
        relay.start(b"" if version == "off" else _proxy_header(version, relay.client.transport))


def _proxy_header(version: Literal["v1", "v2"], client: asyncio.BaseTransport | None) -> bytes:
    """The PROXY header naming the client and the address it connected to."""
    source = client.get_extra_info("peername") if client is not None else None
    destination = client.get_extra_info("sockname") if client is not None else None
    try:
        return proxy_header(version, source[:2], destination[:2])  # type: ignore[index]
    except (TypeError, ValueError):  # not an IP peer (or gone): "unknown", as the spec has it
        return proxy_header_unknown(version)


def _unreachable(relay: Relay, record: Connection, reason: str, error: str) -> None:
    log.warning(
        "stream upstream unreachable; client closed",
        extra={
            "fields": {"stream": record.stream, "close_reason": reason, "error": error},
        },
    )
    relay.abort(reason, error)


def _tls_failure(exc: ssl.SSLError) -> str:
    """The handshake-failure label of a refused TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "client_certificate_refused"
    if exc.reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        return "no_client_certificate"
    if "CERTIFICATE" in (exc.reason or ""):
        return "client_certificate_refused"
    return "tls_error"


async def _hello_name(conn: socket.socket) -> str | None:
    """The SNI name of the ClientHello the client is sending, read without consuming it.

    Peeked bytes stay readable, so between peeks the socket's receive low-water mark is where
    the records it holds end (one byte more than it holds at a record's end): the loop wakes
    when they are whole, instead of peeking and parsing the same prefix again and again while
    a client trickles or stalls (each of up to
    max_connections such clients would otherwise cost the worker a poll every few ms until the
    handshake timeout). The mark is back at one byte before the TLS layer or a passthrough
    relay reads. A wake without a new byte (the client's FIN, say) backs off instead."""
    seen = 0
    pause = PEEK_RETRY_SECONDS
    try:
        while True:
            await readable(conn)
            data = conn.recv(MAX_HELLO_BYTES, socket.MSG_PEEK)
            if not data:
                raise Refused("closed")
            if len(data) == seen:  # woken without a new byte: wait, longer each time
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PEEK_RETRY_SECONDS)
                continue
            seen = len(data)
            try:
                name = server_name(data)
            except NotClientHello as exc:
                raise Refused("not_tls", exc.reason) from None
            if name is not NEED_MORE:
                assert not isinstance(name, type(NEED_MORE))  # noqa: S101 - narrowed for mypy
                return name
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _records_end(data))
    except OSError as exc:
        raise Refused("closed", exc.strerror or str(exc)) from None
    finally:
        with contextlib.suppress(OSError):  # a socket that fails here fails its handshake too
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def _records_end(data: bytes) -> int:
    """How many bytes the peek waits for next: to the end of the TLS records whose headers
    `data` holds (server_name takes whole records), or one more byte at a record's end."""
    end = 0
    while end + RECORD_HEADER <= len(data):
        end += RECORD_HEADER + int.from_bytes(data[end + 3 : end + RECORD_HEADER], "big")
    return min(max(end, len(data) + 1), MAX_HELLO_BYTES)


class Streams:
    """Every stream listener of one worker, and its open connections."""

    def __init__(self, settings: Settings, access_log: AccessLog, metrics: Recorder) -> None:
        self.settings = settings
        self._access_log = access_log
        self._metrics = metrics
        server = settings.server
        routes = {s.name: Route.build(s, server) for s in settings.streams}
        self._routes = routes
        self._by_address: dict[Address, Routes] = {}
        for address in stream_addresses(settings):
            shared = Routes()
            for stream in settings.streams:
                if address in stream.listen:
                    shared.add(routes[stream.name])
            self._by_address[address] = shared
        self._listeners: list[StreamListener] = []
        self._open: set[Connection] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def start(self, sockets: Sequence[socket.socket]) -> None:
        """Serve the sockets bound for stream_addresses(settings), in that order."""
        timeout = self.settings.server.handshake_timeout_seconds
        for sock, routes in zip(sockets, self._by_address.values(), strict=True):
            listener = StreamListener(sock, routes, self, timeout)
            listener.start()
            self._listeners.append(listener)

    def opened(self, record: Connection) -> None:
        self._open.add(record)
        self._empty.clear()

    def relayed(self, record: Connection) -> Callable[[Relay], None]:
        """The callback that ends `record` when its relay ends."""
        route = record.route
        assert route is not None  # noqa: S101 - a relay exists only for a chosen stream
        route.active += 1

        def closed(relay: Relay) -> None:
            route.active -= 1
            record.reason, record.error = relay.reason, relay.error
            self._closed(record)

        return closed

    def refuse(self, record: Connection, conn: socket.socket, refused: Refused) -> None:
        """A connection closed before relaying, counted as a handshake failure: by its relay
        when it has one (whose callback then ends the record), else here."""
        record.failure = refused.reason
        conn.close()  # the transport, if any, holds its own reference until it closes
        if record.relay is not None:
            record.relay.abort(refused.reason, refused.error)
            return
        record.reason, record.error = refused.reason, refused.error
        self._closed(record)

    def _closed(self, record: Connection) -> None:
        """Rule 5: once per connection."""
        if record not in self._open:
            return
        self._open.discard(record)
        if record.route is not None:
            record.route.slots.release()
            record.route = None
        if record.listener_slots is not None:
            record.listener_slots.release()
            record.listener_slots = None
        record.duration_ms = (time.perf_counter() - record.started) * 1000
        relay = record.relay
        if relay is not None:
            self._metrics.stream_bytes(
                record.stream,
                relay.bytes_in - record.counted_in,
                relay.bytes_out - record.counted_out,
            )
        self._metrics.stream_closed(record.stream, record.failure)
        if self._access_log.enabled:
            self._access_log.record(record)
        if not self._open:
            self._empty.set()

    def report(self) -> None:
        """Byte counts of open connections so far, and each stream's open connections."""
        for record in self._open:
            relay = record.relay
            if relay is None:
                continue
            ingress, egress = relay.bytes_in, relay.bytes_out
            self._metrics.stream_bytes(
                record.stream, ingress - record.counted_in, egress - record.counted_out
            )
            record.counted_in, record.counted_out = ingress, egress
        self._metrics.stream_active({name: r.active for name, r in self._routes.items()})

    async def stop_accepting(self) -> None:
        """Close every listener at once, then wait for their handshakes: one after the other,
        a listener would accept on while another waits (Gateway.stop)."""
        await asyncio.gather(*(listener.stop() for listener in self._listeners))

    async def drain(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Wait for the open connections to end: until `until` is set (a worker retiring after
        a reload keeps relaying them), then at most `seconds` more; the rest are closed."""
        if until is not None:
            waiters = [
                asyncio.ensure_future(self._empty.wait()),
                asyncio.ensure_future(until.wait()),
            ]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), seconds)
        for record in list(self._open):
            if record.relay is not None:
                record.relay.abort("shutdown")
