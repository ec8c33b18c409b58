"""proxy/connection.py's read side of a streamed body, on a stand-in transport: what waits for a
slow client is bounded (reading pauses above HIGH_WATER and resumes at LOW_WATER), and read()
hands chunks over as they came, never a join of all that waits."""

from __future__ import annotations

import asyncio

from edgeauth.proxy.connection import HIGH_WATER, LOW_WATER, UpstreamConnection

PIECE = 32 * 1024
PIECES = 2 * HIGH_WATER // PIECE  # twice what may wait: reading must pause on the way
BODY = bytes(range(256)) * (PIECES * PIECE // 256)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)


class _Transport(asyncio.Transport):
    """Records whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def is_reading(self) -> bool:
        return self.reading

    def abort(self) -> None:
        self.closed = True


async def _streaming() -> tuple[UpstreamConnection, _Transport]:
    conn = UpstreamConnection(asyncio.get_running_loop(), 5.0, lambda _: None)
    transport = _Transport()
    conn.connection_made(transport)
    conn.start(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n", None, chunked=False, head_only=False)
    conn.data_received(HEAD)
    await conn.response()
    return conn, transport


def _feed_while_reading(conn: UpstreamConnection, transport: _Transport, sent: int) -> int:
    """What a socket would deliver: pieces of the body until reading pauses or all is sent."""
    while transport.reading and sent < len(BODY):
        conn.data_received(BODY[sent : sent + PIECE])
        sent += PIECE
    return sent


async def test_reading_pauses_above_high_water_and_resumes_at_low_water() -> None:
    conn, transport = await _streaming()
    sent = _feed_while_reading(conn, transport, 0)
    assert not transport.is_reading()
    assert HIGH_WATER < sent < len(BODY)  # paused before the service sent everything
    waiting = sent
    while waiting - PIECE > LOW_WATER:
        assert await conn.read() == BODY[sent - waiting : sent - waiting + PIECE]
        waiting -= PIECE
        assert not transport.is_reading()  # still more than LOW_WATER waiting
    await conn.read()
    assert transport.is_reading()
    conn.close()


async def test_a_slow_clients_body_arrives_whole_in_chunks_no_larger_than_a_read() -> None:
    conn, transport = await _streaming()
    sent, got = 0, bytearray()
    while True:
        sent = _feed_while_reading(conn, transport, sent)
        chunk = await conn.read()
        if not chunk:
            break
        assert len(chunk) <= PIECE  # one socket read at most: nothing joined, nothing copied
        got += chunk
    assert got == BODY
    assert transport.reading
    assert conn.reusable
    conn.close()
