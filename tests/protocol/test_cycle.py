"""protocol.py's request cycle (State) on a stand-in transport: a request takes the connection
from IDLE through HEAD, BODY and DONE back to IDLE, and a head pipelined behind an answer is
NEXT_HEAD until that answer is written."""

from __future__ import annotations

import asyncio
from typing import Any

from edgeauth.errors import BadRequestBody
from edgeauth.messages import Request, Response
from edgeauth.protocol import Connections, GatewayProtocol, Limits, State


class _Transport(asyncio.Transport):
    """Keeps what is written; reading and closing are only recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(name)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def _echo(request: Request) -> Response:
    body = b""
    try:
        while chunk := await request.content.read_any():
            body += chunk
    except BadRequestBody:
        return Response(400)
    return Response(200, body=body)


def _connect() -> tuple[GatewayProtocol, _Transport]:
    proto = Connections(_echo, Limits(5.0, 8192, 16384))()
    transport = _Transport()
    proto.connection_made(transport)
    return proto, transport


def _state(proto: GatewayProtocol) -> State:
    """Read through a call, so that the type checker does not carry one assert to the next."""
    return proto._state


async def _answered(proto: GatewayProtocol) -> None:
    assert proto.task is not None
    await asyncio.wait_for(proto.task, 5)


async def test_a_request_takes_the_connection_through_its_head_and_body_back_to_idle() -> None:
    proto, transport = _connect()
    assert _state(proto) is State.IDLE
    proto.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-")
    assert _state(proto) is State.HEAD
    proto.data_received(b"Length: 4\r\n\r\nab")
    assert _state(proto) is State.BODY
    proto.data_received(b"cd")
    assert _state(proto) is State.DONE
    await _answered(proto)
    assert _state(proto) is State.IDLE
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.written.endswith(b"\r\n\r\nabcd")
    assert not transport.closed
    proto.connection_lost(None)


async def test_a_head_pipelined_behind_an_answer_is_next_head_until_that_answer_is_written() -> (
    None
):
    proto, transport = _connect()
    proto.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo")
    assert _state(proto) is State.NEXT_HEAD
    await _answered(proto)
    assert _state(proto) is State.HEAD  # nothing outstanding, the next head still arriving
    proto.data_received(b"st: a\r\n\r\n")
    assert _state(proto) is State.DONE
    await _answered(proto)
    assert _state(proto) is State.IDLE
    assert transport.written.count(b"HTTP/1.1 200 OK\r\n") == 2
    proto.connection_lost(None)


async def test_a_broken_body_ends_it_and_the_answer_is_the_connections_last() -> None:
    proto, transport = _connect()
    proto.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert _state(proto) is State.BODY
    proto.data_received(b"zz\r\n")  # not a chunk size
    assert _state(proto) is State.DONE
    await _answered(proto)
    assert transport.written.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nConnection: close\r\n" in transport.written
    proto.connection_lost(None)
