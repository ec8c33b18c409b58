"""proxy/connection.py's UpstreamConnection on a stand-in transport: when a connection may go
back to the pool, decided from what it has read and whether it is reading; and the read side
of a streamed body: what waits for a slow client is bounded (reading pauses above HIGH_WATER
and resumes at LOW_WATER), and read() hands chunks over as they came, never a join of all that
waits."""

from __future__ import annotations

import asyncio

from edgeauth.proxy.connection import HIGH_WATER, LOW_WATER, UpstreamConnection

BODY = b"x" * (HIGH_WATER + 1)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)


class _Transport(asyncio.Transport):
    """Records writes and whether reading is paused."""

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


async def _answered(first_read: bytes = ANSWER) -> tuple[UpstreamConnection, _Transport]:
    """A connection whose response head came in one read with `first_read` (by default the
    whole response, body above HIGH_WATER)."""
    conn = UpstreamConnection(asyncio.get_running_loop(), 5.0, lambda _: None)
    transport = _Transport()
    conn.connection_made(transport)
    conn.start(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n", None, chunked=False, head_only=False)
    conn.data_received(first_read)
    await conn.response()
    return conn, transport


async def test_a_whole_body_taken_while_reading_is_paused_keeps_the_connection_unpooled() -> None:
    conn, transport = await _answered()
    assert not transport.reading  # more than HIGH_WATER waits for the client
    assert conn.whole_body() == BODY
    assert not conn.reusable  # paused: the next exchange's answer would never be read
    conn.close()


async def test_a_body_read_to_its_end_resumes_reading_and_the_connection_is_reusable() -> None:
    conn, transport = await _answered()
    assert await conn.read() == BODY
    assert transport.reading
    assert await conn.read() == b""
    assert conn.reusable
    conn.close()


# -- a streamed body, read slowly ------------------------------------------------------------

PIECE = 32 * 1024
PIECES = 2 * HIGH_WATER // PIECE  # twice what may wait: reading must pause on the way
STREAMED = bytes(range(256)) * (PIECES * PIECE // 256)
STREAMED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(STREAMED)


def _feed_while_reading(conn: UpstreamConnection, transport: _Transport, sent: int) -> int:
    """What a socket would deliver: pieces of the body until reading pauses or all is sent."""
    while transport.reading and sent < len(STREAMED):
        conn.data_received(STREAMED[sent : sent + PIECE])
        sent += PIECE
    return sent


async def test_reading_pauses_above_high_water_and_resumes_at_low_water() -> None:
    conn, transport = await _answered(STREAMED_HEAD)
    sent = _feed_while_reading(conn, transport, 0)
    assert not transport.is_reading()
    assert HIGH_WATER < sent < len(STREAMED)  # paused before the service sent everything
    waiting = sent
    while waiting - PIECE > LOW_WATER:
        assert await conn.read() == STREAMED[sent - waiting : sent - waiting + PIECE]
        waiting -= PIECE
        assert not transport.is_reading()  # still more than LOW_WATER waiting
    await conn.read()
    assert transport.is_reading()
    conn.close()


async def test_a_slow_clients_body_arrives_whole_in_chunks_no_larger_than_a_read() -> None:
    conn, transport = await _answered(STREAMED_HEAD)
    sent, got = 0, bytearray()
    while True:
        sent = _feed_while_reading(conn, transport, sent)
        chunk = await conn.read()
        if not chunk:
            break
        assert len(chunk) <= PIECE  # one socket read at most: nothing joined, nothing copied
        got += chunk
    assert got == STREAMED
    assert transport.reading
    assert conn.reusable
    conn.close()
