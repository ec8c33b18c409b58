"""The accept loop of one listening socket: connection slots and the TLS handshake.

Rule 1: at most `max_connections` connections per worker; beyond that the loop waits, so new
connections queue in the kernel's backlog instead of being accepted and starved.
Rule 2: the handshake runs in its own task with `handshake_timeout`, so a silent client never
blocks the loop; an idle connection holds no task once served.
Rule 3: on a TLS listener the first byte is peeked at before the handshake: a letter is plain
HTTP, answered with one 400 (as nginx's 497) and closed, instead of an empty reply. The peek,
the answer and the handshake share one `handshake_timeout`.
Rule 4: every accepted connection gives its slot back exactly once: its protocol does when it
ends, `_serve` does when it never became one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

import orjson

from edgeauth.protocol import GatewayProtocol

log = logging.getLogger(__name__)

_PLAIN_BODY = orjson.dumps({"message": "The plain HTTP request was sent to HTTPS port"})
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % len(_PLAIN_BODY)
) + _PLAIN_BODY
_DISCARD_CAP = 65536  # bytes of the plain request read and dropped before closing


class AcceptLoop:
    """Accepts connections on one listening socket while a slot is free (Rule 1) and serves
    each in a task of its own (Rule 2); what serving means is the subclass's `_serve`, which
    owns the connection's slot from then on (Rule 4). The stream listeners are the other kind.
    """

    def __init__(
        self, sock: socket.socket, *, handshake_timeout: float, slots: asyncio.Semaphore
    ) -> None:
        self._sock = sock
        self._handshake_timeout = handshake_timeout
        self._slots = slots
        self._task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting; connections already accepted finish their handshake (within the
        handshake timeout) and are left to drain: a stopping worker never resets a client
        it has accepted."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._sock.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=self._handshake_timeout)

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
        raise NotImplementedError

    @staticmethod
    def _remaining(deadline: float) -> float:
        # never 0: asyncio refuses a non-positive handshake timeout
        return max(deadline - asyncio.get_running_loop().time(), 0.001)


class Listener(AcceptLoop):
    """Accepts HTTP connections on one listening socket, at most `max_connections` at a time.

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
        super().__init__(sock, handshake_timeout=handshake_timeout, slots=slots)
        self._factory = factory
        self._ssl = ssl_context

    async def _serve(self, conn: socket.socket) -> None:
        """Hold one connection's slot through its handshake; its protocol releases the slot
        when the connection ends. The task ends after the handshake: an idle connection
        costs no task or coroutine frame."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handshake_timeout
        made: list[GatewayProtocol] = []

        def factory() -> GatewayProtocol:
            protocol = self._factory()
            protocol.on_closed = self._slots.release
            made.append(protocol)
            return protocol

        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None and not await _looks_like_tls(conn, deadline):
                conn.close()
                self._slots.release()
                return
            await loop.connect_accepted_socket(
                factory,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._remaining(deadline) if self._ssl else None,
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


async def _looks_like_tls(conn: socket.socket, deadline: float) -> bool:
    """Peek at the first byte: False when the connection has been dealt with here (plain
    HTTP answered, or closed before sending anything); True for anything else, which the
    TLS handshake then accepts or refuses. A silent client raises TimeoutError."""
    conn.setblocking(False)
    async with asyncio.timeout_at(deadline):
        await readable(conn)
        first = conn.recv(1, socket.MSG_PEEK)
        if first and not first.isalpha():  # a TLS handshake record starts with 0x16
            return True
        if first:
            log.debug("plain HTTP on a TLS listener: answered 400")
            await _answer_plain_http(conn)
    return False


async def readable(conn: socket.socket) -> None:
    """Wait until `conn` has a byte (or EOF) to read."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


async def _answer_plain_http(conn: socket.socket) -> None:
    """Send the 400, end our side, and read what the client sent until it closes (capped):
    closing with its request unread would reset the connection and could lose the answer."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(conn, PLAIN_HTTP_ANSWER)
    conn.shutdown(socket.SHUT_WR)
    discarded = 0
    while discarded < _DISCARD_CAP:
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            return
        discarded += len(chunk)
