"""The pool of keep-alive connections to one service, and the translation of its failures.

Rule 1: at most `max_connections` connections per service; beyond that a request waits up to
`pool_timeout_seconds` for one to come back, then gets 503. Idle connections are reused
newest first and dropped after KEEPALIVE_SECONDS, below the idle timeouts of common backends
(Apache's 5 s), so that a connection the service has just closed is rarely picked.
Rule 2: a request is retried only when it failed to connect, before any byte of it was sent
(design §2 `retries`); a request the service may have received is never replayed.
Rule 3: no transport exception escapes this module: they become UpstreamUnreachable (502) or
UpstreamTimeout (504).
Rule 4: the request's framing is computed here from the body as parsed (its length, or
chunked), never copied from the client; a body that ends short of its length fails the
exchange, so the service never sees a request the client did not send whole.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from edgeauth import tls
from edgeauth.config import ServiceSettings
from edgeauth.errors import (
    BodyTooLarge,
    ProxyError,
    UpstreamBusy,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from edgeauth.messages import encode_head
from edgeauth.proxy.connection import UpstreamConnection

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 4.0
_EMPTY_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CHUNKED = "Transfer-Encoding: chunked\r\n\r\n"
_EMPTY = "Content-Length: 0\r\n\r\n"
_NONE = "\r\n"


class BodyStream:
    """The client's request body as the upstream request's payload, counted as it streams.

    Raises BodyTooLarge as soon as the running total passes `limit` (0 = unlimited), so an
    over-limit chunked upload is cut without buffering it. `length` is the length the upstream
    request declares (None: chunked); a body that ends with another size raises.
    """

    __slots__ = ("_chunks", "_limit", "length", "size", "started")

    def __init__(self, chunks: AsyncIterator[bytes], limit: int, length: int | None) -> None:
        self._chunks = chunks
        self._limit = limit
        self.length = length
        self.size = 0
        self.started = False

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if self.length is not None and self.size != self.length:
                raise UpstreamUnreachable() from None  # never complete the upstream request
            raise
        self.size += len(chunk)
        if self._limit and self.size > self._limit:
            raise BodyTooLarge()
        return chunk

    @property
    def too_large(self) -> bool:
        return bool(self._limit) and self.size > self._limit

    @classmethod
    def whole(cls, data: bytes) -> BodyStream:
        """A body the gateway has already read (and may have changed): sent as one piece with
        the length of these bytes, never the client's."""
        return cls(_once(data), 0, len(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def _ssl_for(service: ServiceSettings) -> ssl.SSLContext | None:
    if not service.url.startswith("https:"):
        return None
    return tls.upstream_context(service.tls_verify, service.ca_file)


def request_head(
    method: str, target: str, host: str, headers: list[tuple[str, str]], framing: str
) -> bytes:
    """The request line and header block, as sent; refuses a value that would split a line."""
    try:
        return encode_head(f"{method} {target} HTTP/1.1", [("Host", host), *headers], framing)
    except ValueError:
        raise UpstreamUnreachable() from None  # never sent (aiohttp's client refused it too)


class Upstream:
    """The connection pool of one service."""

    def __init__(self, service: ServiceSettings) -> None:
        self.service = service
        parts = urlsplit(service.url)
        https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if https else 80)
        default_port = parts.port is None or parts.port == (443 if https else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.host_header = host if default_port else f"{host}:{self._port}"
        self._ssl = _ssl_for(service)
        self._limit = service.max_connections
        self._retries = service.retries
        self._idle: list[UpstreamConnection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Bind the pool to the worker's event loop; must run inside it."""
        self._loop = asyncio.get_running_loop()
        self._expiry = self._loop.call_later(KEEPALIVE_SECONDS, self._expire_idle)

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        while self._idle:
            self._idle.pop().close()

    async def send(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: BodyStream | None,
    ) -> UpstreamConnection:
        """Send one request; the connection returned holds the response head and its body."""
        framing = self._framing(method, body)
        head = request_head(method, target, self.host_header, headers, framing)
        conn = self._idle_connection() or await self._acquire()  # no coroutine if idle
        try:
            conn.start(head, body, chunked=framing is _CHUNKED, head_only=method == "HEAD")
            await conn.response()
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise translate(exc, body) from exc
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after its response: pooled if whole and reusable."""
        if not conn.reusable:
            conn.close()
            return
        conn.finish()
        self._idle.append(conn)
        self._wake_one()

    @staticmethod
    def _framing(method: str, body: BodyStream | None) -> str:
        """The head's framing lines, from the body as parsed (rule 4)."""
        if body is None:
            return _EMPTY if method in _EMPTY_BODY_METHODS else _NONE
        if body.length is None:
            return _CHUNKED
        return f"Content-Length: {body.length}\r\n\r\n"

    async def _acquire(self) -> UpstreamConnection:
        """An idle connection, or a new one once the pool has room (connect retries here)."""
        assert self._loop is not None  # noqa: S101 - open() was called
        deadline: float | None = None
        while True:
            conn = self._idle_connection()
            if conn is not None:
                return conn
            now = self._loop.time()
            if self._open < self._limit:
                break
            if deadline is None:
                deadline = now + self.service.pool_timeout_seconds
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except (asyncio.CancelledError, TimeoutError) as exc:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on
                if isinstance(exc, TimeoutError):
                    raise UpstreamBusy() from None
                raise
        self._open += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        conn.holds_slot = True  # from now on its end (connection_lost) frees the slot
        return conn

    def _idle_connection(self) -> UpstreamConnection | None:
        """The newest idle connection still fit for a request; stale ones are closed."""
        if not self._idle:
            return None
        assert self._loop is not None  # noqa: S101 - open() was called
        now = self._loop.time()
        while self._idle:
            conn = self._idle.pop()
            transport = conn.transport
            if (
                transport is not None
                and not transport.is_closing()
                and now - conn.idle_since < KEEPALIVE_SECONDS
            ):
                return conn
            conn.close()
        return None

    async def _connect(self) -> UpstreamConnection:
        loop = self._loop
        assert loop is not None  # noqa: S101 - open() was called
        attempt = 0
        service = self.service
        while True:
            try:
                async with asyncio.timeout(service.connect_timeout_seconds):
                    _, conn = await loop.create_connection(
                        lambda: UpstreamConnection(loop, service.read_timeout_seconds, self._lost),
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None,
                    )
                return conn
            except (OSError, TimeoutError) as exc:
                if attempt >= self._retries:
                    raise translate(exc, None) from exc
                attempt += 1
                log.debug("retrying connect to %s after %r", service.name, exc)

    def _lost(self, conn: UpstreamConnection) -> None:
        """A connection of this pool ended (any reason): its slot is free. One that ended
        before `_acquire` counted it was never counted (its slot went back there)."""
        if not conn.holds_slot:
            return
        conn.holds_slot = False
        self._open -= 1
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire_idle(self) -> None:
        """Close connections idle for longer than KEEPALIVE_SECONDS, now and then."""
        assert self._loop is not None  # noqa: S101 - open() was called
        now = self._loop.time()
        for conn in [c for c in self._idle if now - c.idle_since >= KEEPALIVE_SECONDS]:
            self._idle.remove(conn)
            conn.close()
        self._expiry = self._loop.call_later(KEEPALIVE_SECONDS, self._expire_idle)


def translate(exc: BaseException, body: BodyStream | None) -> Exception:
    """Map an upstream-leg failure to the gateway error that answers it."""
    if body is not None and body.too_large:
        return BodyTooLarge()
    if isinstance(exc, ProxyError):  # ours already: 408, 400, 413, 502, 503, 504
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout()
    return UpstreamUnreachable()
