"""Backpressure on one transport, both ways, for the downstream protocol and the upstream leg.

Writing: the transport calls its protocol's pause_writing()/resume_writing() as its buffer
crosses the high and low water marks; the protocol passes them on here, and a writer awaits
`drain()` so that it never buffers without bound for a peer that does not read. Once the
connection is lost, `drain()` fails with the error the protocol gave `connection_lost()`,
a writer waiting at that moment included.
Reading: a protocol pauses reading while what it has read waits for its consumer;
pause_reading()/resume_reading() may be called any number of times, and only a change
reaches the transport. After the connection is lost neither does anything.
What a pause means for a protocol's timers stays with the protocol.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    """The flow control of one connection; made in its protocol's connection_made()."""

    __slots__ = ("_lost", "_transport", "_waiter", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._lost: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.write_paused = False

    # -- writing ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def draining(self) -> bool:
        """Whether a writer is waiting in drain() for the peer to read."""
        return self._waiter is not None

    async def drain(self) -> None:
        """Return once the transport takes more; raise once the connection is lost."""
        if self._lost is not None:
            raise self._lost
        if self.write_paused:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def connection_lost(self, exc: BaseException) -> None:
        """The connection is gone: a waiting writer, and every later drain(), get `exc`."""
        self._lost = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
            self._waiter.exception()  # retrieved here: the writer may have gone already

    # -- reading ------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and self._lost is None:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> bool:
        """Read again; whether reading was paused (so the protocol can restart its clocks)."""
        if not self.read_paused or self._lost is not None:
            return False
        self.read_paused = False
        self._transport.resume_reading()
        return True
