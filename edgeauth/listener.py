"""The accept loop of one listening socket: connection slots and the TLS handshake.

Rule 1: at most `max_connections` connections per worker; beyond that the loop waits, so new
connections queue in the kernel's backlog instead of being accepted and starved.
Rule 2: the handshake runs in its own task with `handshake_timeout`, so a silent client never
blocks the loop; an idle connection holds no task once served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from edgeauth.protocol import GatewayProtocol

log = logging.getLogger(__name__)


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
