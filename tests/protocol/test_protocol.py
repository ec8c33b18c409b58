"""The downstream HTTP/1.1 connection (protocol.py, messages.py) over real TLS sockets:
keep-alive and pipelining, HTTP/1.0, request framings, Upgrade, the 100-continue rule on the
token endpoint, refused heads, and a handler that never reads its body."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import orjson
import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import events_service

ECHO = b"GET /tools/echo HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
async def tools(backend: Backend, gateway: GatewayFactory) -> RunningGateway:
    """A gateway with the sample backend's public `tools` service under /tools."""
    return await gateway([service("tools", backend.url, ["/tools"])])


async def _open(
    port: int, client_ssl: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost"
    )


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response, framed by Content-Length or chunked encoding."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    else:
        body = await reader.read()
    return status, headers, body


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    paths = [f"/tools/echo/{i}" for i in range(5)]
    post = b"POST /tools/echo/body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    writer.write(b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths) + post)
    for path in paths:
        status, _, body = await _response(reader)
        assert status == 200
        assert orjson.loads(body)["path"] == path.removeprefix("/tools")
    status, _, body = await _response(reader)
    assert orjson.loads(body)["body_bytes"] == 5
    writer.close()


async def test_http_1_0_gets_its_answer_and_the_connection_closes(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(b"GET /tools/echo HTTP/1.0\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == 200
    assert orjson.loads(body)["method"] == "GET"
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the answer
    writer.close()
    # and a streamed answer to HTTP/1.0 ends with the connection, never chunked
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(b"GET /tools/bytes/100000 HTTP/1.0\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == 200
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert len(body) == 100000
    writer.close()


async def test_chunked_upload_is_decoded_and_forwarded_whole(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(
        b"POST /tools/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    status, _, body = await _response(reader)
    assert status == 200
    assert orjson.loads(body)["body_bytes"] == 11
    writer.write(ECHO)  # the connection is still good for the next request
    status, _, _ = await _response(reader)
    assert status == 200
    writer.close()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /tools/echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n",
    ],
    ids=["upgrade", "connect"],
)
async def test_upgrade_and_connect_are_refused_with_501_and_never_forwarded(
    tools: RunningGateway, client_ssl: ssl.SSLContext, head: bytes
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(head + b"Content-Length: 5\r\n\r\nhello")
    status, headers, _ = await _response(reader)
    assert status == 501
    assert headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_a_refused_upload_is_answered_while_the_client_still_sends_then_closed(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], max_request_body_bytes=10)])
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(b"POST /tools/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
    writer.write(b"x" * 50000)  # the client keeps sending while the answer comes back
    status, headers, _ = await _response(reader)
    assert status == 413
    assert headers["connection"] == "close"
    writer.write(b"x" * 50000)  # dropped while the gateway lingers, then the connection ends
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_the_token_endpoint_answers_expect_continue_before_reading_the_body(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([events_service(backend)])
    reader, writer = await _open(gw.port, client_ssl)
    form = b"grant_type=client_credentials&client_id=nobody&client_secret=x"
    writer.write(
        b"POST /events/oauth2/token HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(form)
    status, headers, body = await _response(reader)
    assert status == 400  # Kong's status for invalid_client on the token endpoint
    assert orjson.loads(body)["error"] == "invalid_client"
    assert headers["cache-control"] == "no-store"
    writer.close()


async def test_a_malformed_head_is_400_json_and_the_worker_keeps_serving(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    for bad in (
        b"GET /tools/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"GET /tools/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n",
        b"GET /tools/echo HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01 not http at all\r\n\r\n",
    ):
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(bad)
        status, _, body = await _response(reader)
        assert status == 400
        assert orjson.loads(body) == {"message": "Bad request"}
        writer.close()
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(ECHO)
    status, _, _ = await _response(reader)
    assert status == 200
    writer.close()


async def test_a_client_that_pipelines_without_reading_is_not_served_beyond_its_buffer(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    count = 2000
    request = b"GET /tools/bytes/20000 HTTP/1.1\r\nHost: t\r\n\r\n"
    writer.write(request * count)
    await writer.drain()
    await asyncio.sleep(1.0)  # the client reads nothing meanwhile
    (conn,) = gw.gateway.connections()
    assert conn.transport is not None
    held = conn.transport.get_write_buffer_size()
    assert held < 4 * 1024 * 1024  # answers stop once the client's buffer is full
    for _ in range(count):  # and every answer arrives, in order, once it reads
        status, _, body = await _response(reader)
        assert status == 200
        assert len(body) == 20000
    writer.close()


async def test_a_pipelined_head_that_keeps_growing_ends_the_connection_after_the_first_answer(
    tools: RunningGateway, client_ssl: ssl.SSLContext
) -> None:
    gw = tools
    reader, writer = await _open(gw.port, client_ssl)
    writer.write(b"GET /tools/slow/500 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nX: ")
    with contextlib.suppress(ConnectionError):
        for _ in range(64):  # 4 MiB of one header value, far over the head limit
            writer.write(b"a" * 65536)
            await writer.drain()
    try:
        ended = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:  # closed with our bytes unread: the kernel may send a reset
        ended = b""
    # the request in progress gets its one answer; the refused one none, then the close
    assert ended.count(b"HTTP/1.1 ") <= 1
    assert b"HTTP/1.1 431" not in ended
    writer.close()
