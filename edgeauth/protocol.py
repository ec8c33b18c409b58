"""One downstream HTTP/1.1 connection: aiohttp's RequestHandler with the edge's limits.

Rule 1: a request head must arrive whole within `header_timeout_seconds` of its first byte
(or of the connection's start), however slowly it trickles in: slowloris is cut off with 408.
Rule 2: the head is bounded (request line, header count, total header bytes): 414 / 431.
Rule 3: protocol errors answer with a fixed JSON body that never echoes the input.
This module leans on RequestHandler internals (`_request_count`), hence the aiohttp pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


def _fixed(status: bytes, message: bytes) -> bytes:
    body = b'{"message":"' + message + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )


HEAD_TIMEOUT = _fixed(b"408 Request Timeout", b"Request header timeout")
HEAD_TOO_LARGE = _fixed(b"431 Request Header Fields Too Large", b"Request header fields too large")


class Limits:
    """The per-connection limits of `[server]`, shared by every connection of a worker."""

    __slots__ = ("header_timeout", "max_head_bytes", "max_header_bytes", "max_line_bytes")

    def __init__(self, header_timeout: float, max_line_bytes: int, max_header_bytes: int) -> None:
        self.header_timeout = header_timeout
        self.max_line_bytes = max_line_bytes
        self.max_header_bytes = max_header_bytes
        # request line + CRLF + headers + final CRLF
        self.max_head_bytes = max_line_bytes + max_header_bytes + 4


class GatewayProtocol(RequestHandler):
    """RequestHandler that enforces the head deadline and size, and reports its own end."""

    def __init__(self, manager: web.Server, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self.on_closed: Callable[[], None] | None = None
        self.tls_version: str | None = None
        self.peer_address = ""
        self.local_port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = ssl_object.version()
        # Read once per connection, not per request.
        peername = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        self.peer_address = peername[0] if peername else ""
        self.local_port = sockname[1] if sockname else 0
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)
        on_closed, self.on_closed = self.on_closed, None
        if on_closed is not None:
            on_closed()

    def data_received(self, data: bytes) -> None:
        if not self._awaiting_head:
            super().data_received(data)
            return
        if self._head_timer is None:
            self._arm_head_timer()
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._awaiting_head = False
            self._cancel_head_timer()
            return
        self._head_bytes += len(data)
        if self._head_bytes > self._limits.max_head_bytes:
            self._refuse(HEAD_TOO_LARGE)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        # A pipelined request already parsed, or an unread body still to be drained, is not
        # the start of a new head: only a clean end of exchange re-arms the head rules.
        self._awaiting_head = not self._messages and request.content.is_eof()
        self._head_bytes = 0
        return result

    def _arm_head_timer(self) -> None:
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        """A partial head gets a 408; a connection that never said anything is just closed."""
        self._head_timer = None
        if self._awaiting_head:
            self._refuse(HEAD_TIMEOUT if self._head_bytes else b"")

    def _refuse(self, response: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if response:
                transport.write(response)
            transport.close()
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Protocol errors as fixed JSON bodies: 414/431 for oversized heads, 400 otherwise."""
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        status, text = _classify(status, exc, self._limits)
        if status == 500:
            log.error("unhandled error", exc_info=exc)
        resp = web.Response(
            status=status,
            body=orjson.dumps({"message": text}),
            content_type="application/json",
        )
        resp.force_close()
        return resp


def _classify(status: int, exc: BaseException | None, limits: Limits) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == limits.max_line_bytes:
            return 414, "Request-URI too long"
        return 431, "Request header fields too large"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        return 431, "Request header fields too large"
    if status == 500:
        return 500, "An unexpected error occurred"
    if status == 504:
        return 504, "The upstream server is timing out"
    return 400, "Bad request"


class Listener:
    """Accepts connections on one listening socket, at most `max_connections` at a time.

    Beyond the limit the accept loop simply waits, so new connections queue in the kernel's
    backlog instead of being accepted and starved. The TLS handshake runs in its own task
    with `handshake_timeout`, so a silent client never blocks the loop.
    """

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], GatewayProtocol],
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        slots: asyncio.Semaphore,
    ) -> None:
        self._sock = sock
        self._factory = factory
        self._ssl = ssl_context
        self._handshake_timeout = handshake_timeout
        self._slots = slots
        self._task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting; connections already accepted are left to drain."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except OSError as exc:
                self._slots.release()
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.05)
                continue
            task = loop.create_task(self._serve(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket) -> None:
        """Hold one connection's slot through its handshake; its protocol releases the slot
        when the connection ends. The task ends after the handshake: an idle connection
        costs no task or coroutine frame."""
        loop = asyncio.get_running_loop()
        made: list[GatewayProtocol] = []

        def factory() -> GatewayProtocol:
            protocol = self._factory()
            protocol.on_closed = self._slots.release
            made.append(protocol)
            return protocol

        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.connect_accepted_socket(
                factory,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._handshake_timeout if self._ssl else None,
            )
        except BaseException as exc:
            if not made or (made[0].on_closed is not None and made[0].transport is None):
                # never served: the slot is still ours to give back
                if made:
                    made[0].on_closed = None
                conn.close()
                self._slots.release()
            if not isinstance(exc, TimeoutError | OSError | ssl.SSLError | ConnectionError):
                raise
            log.debug("connection failed before serving: %r", exc)
