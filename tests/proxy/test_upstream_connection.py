"""proxy/connection.py's UpstreamConnection on a stand-in transport: when a connection may go
back to the pool, decided from what it has read and whether it is reading."""

from __future__ import annotations

import asyncio

from edgeauth.proxy.connection import HIGH_WATER, UpstreamConnection

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

    def abort(self) -> None:
        self.closed = True


async def _answered() -> tuple[UpstreamConnection, _Transport]:
    """A connection whose whole response, body above HIGH_WATER, came in one read."""
    conn = UpstreamConnection(asyncio.get_running_loop(), 5.0, lambda _: None)
    transport = _Transport()
    conn.connection_made(transport)
    conn.start(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n", None, chunked=False, head_only=False)
    conn.data_received(ANSWER)
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
