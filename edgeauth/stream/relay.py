"""The byte relay of one stream connection: a protocol per side, and what ends them.

Rule 1: flow control both ways: each transport has write-buffer limits; when one fills
(pause_writing) the other side stops reading until it drains (resume_writing), so a relay holds
at most its two write buffers whatever the volume, or however slowly one side reads.
Rule 2: bytes go from one side's data_received straight to the other side's write: no copy of
ours, no per-chunk task, timer or allocation beyond the event loop's own.
Rule 3: EOF one way keeps the other way open (write_eof) where both transports can half-close
(TCP). A TLS side cannot (asyncio and uvloop end the whole TLS connection on close_notify, and
offer no write_eof): there an EOF ends the connection once what is buffered is written.
Rule 4: the idle timer is one loop.call_at per connection, re-armed when it fires if a byte went
through meanwhile; a chunk only notes the loop's time.
Rule 5: bytes that arrive before the relay starts (the client's, while the upstream connects)
are held, and that side read no more, until `start` writes them on after the PROXY header; an
EOF that arrives then (a client that half-closes before it has sent anything, and waits for the
upstream to speak) is passed on by `start` too, after them.
Rule 6: a relay ends exactly once: `on_closed` runs when no side is left, with the reason
of whatever ended it first (`reason`, and `error` for a failure's words).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

HIGH_WATER = 256 * 1024  # a side's write buffer beyond which the other side stops reading
LOW_WATER = 64 * 1024  # ... and below which it reads again


class Side(asyncio.Protocol):
    """One end of the relay: what it receives is written to the other end."""

    __slots__ = ("_relay", "_time", "ended", "held", "name", "other", "received", "transport")

    def __init__(self, relay: Relay, name: str) -> None:
        self._relay = relay
        self._time = relay.loop.time
        self.name = name  # "client" or "upstream", the prefix of close reasons
        self.other: Side = self
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.ended = False  # no more bytes will come from this side
        self.held: list[bytes] = []  # received before the other side was there

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses)
        self.transport = transport = cast(asyncio.Transport, transport)
        self._relay.open += 1
        if self._relay.done:  # the other side is gone already: nothing to relay to
            transport.abort()
            return
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self._relay.last = self._time()
        peer = self.other.transport
        if peer is None or self.held:  # not started yet: hold it, read no more until then
            self.held.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        peer.write(data)

    def eof_received(self) -> bool:
        return self._relay.eof(self)

    def pause_writing(self) -> None:
        other = self.other.transport
        if other is not None and not other.is_closing():
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self.other.transport
        if other is not None and not other.is_closing():
            other.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.lost(self, exc)


class Relay:
    """Both sides of one connection, its counters and its idle timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        idle_timeout: float,
        on_closed: Callable[[Relay], None],
    ) -> None:
        self.loop = loop
        self.client = Side(self, "client")
        self.upstream = Side(self, "upstream")
        self.client.other, self.upstream.other = self.upstream, self.client
        self.open = 0  # sides whose transport is there and not lost yet
        self.started = False
        self.done = False
        self.reason = ""
        self.error = ""
        self.last = loop.time()
        self._idle_timeout = idle_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._on_closed = on_closed

    @property
    def bytes_in(self) -> int:
        """Bytes from the client (to the upstream)."""
        return self.client.received

    @property
    def bytes_out(self) -> int:
        """Bytes from the upstream (to the client)."""
        return self.upstream.received

    def start(self, first: bytes = b"") -> None:
        """Both sides are connected: send `first` upstream (a PROXY header), then relay."""
        client, upstream = self.client.transport, self.upstream.transport
        if self.done or client is None or upstream is None:
            return
        if first:
            upstream.write(first)
        self.started = True
        for side, peer in ((self.client, upstream), (self.upstream, client)):
            for data in side.held:
                peer.write(data)
            side.held.clear()
            if side.ended and not peer.is_closing():  # its EOF came before the relay (Rule 5)
                if peer.can_write_eof() and not side.other.ended:
                    peer.write_eof()
                else:
                    peer.close()
        self.last = self.loop.time()
        self._timer = self.loop.call_at(self.last + self._idle_timeout, self._idle)
        client.resume_reading()
        upstream.resume_reading()

    def _idle(self) -> None:
        due = self.last + self._idle_timeout
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._idle)
            return
        self.abort("idle_timeout")

    def abort(self, reason: str, error: str = "") -> None:
        """End both sides now, buffered bytes dropped (idle, refused, shut down)."""
        self._note(reason, error)
        self.done = True
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.abort()
        self._finish_if_gone()

    def eof(self, side: Side) -> bool:
        """`side` will send no more: pass the EOF on (Rule 3). True keeps `side` open for
        what the other way still carries."""
        side.ended = True
        self._note(f"{side.name}_closed")
        mine = side.transport
        if not self.started and not self.done:  # `start` passes it on (Rule 5)
            return mine is not None and mine.can_write_eof()
        other = side.other.transport
        if other is None or other.is_closing():
            return False
        if not other.can_write_eof():
            other.close()  # a TLS side: close_notify once its buffer is written
            return False
        other.write_eof()
        if side.other.ended:
            other.close()
            return False
        # a TLS side closes whatever it is told (Rule 3): tell it so
        return mine is not None and mine.can_write_eof()

    def lost(self, side: Side, exc: Exception | None) -> None:
        if exc is None:
            self._note(f"{side.name}_closed")
        else:
            self._note(f"{side.name}_error", str(exc) or type(exc).__name__)
        self.open -= 1
        other = side.other.transport
        if other is not None and not other.is_closing():
            other.close()  # what it still has to write is written first
        side.transport = None
        self._finish_if_gone()

    def _note(self, reason: str, error: str = "") -> None:
        if not self.reason:
            self.reason, self.error = reason, error

    def _finish_if_gone(self) -> None:
        if self.open > 0 or (self.done and self._on_closed is _ended):
            return
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        on_closed, self._on_closed = self._on_closed, _ended
        on_closed(self)


def _ended(relay: Relay) -> None:
    """What a relay calls once it has ended: nothing more (Rule 6)."""
