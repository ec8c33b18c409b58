"""Plain HTTP sent to the TLS port: one 400 that says so, then close (nginx's 497), never an
empty reply; the connection slot comes back and TLS clients are served as before.

Real TCP and TLS sockets against an in-process gateway, on asyncio's loop and on uvloop (the
workers' loop). Waits are bounded and assert what happened, never how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

import orjson
import uvloop

from edgeauth import tls
from edgeauth.bootstrap import prepare_store
from edgeauth.config import Address, load_settings
from edgeauth.server import Gateway
from edgeauth.supervisor import bind
from tests.conftest import (
    Backend,
    GatewayFactory,
    raw_exchange,
    service,
    status_of,
    write_config,
)

PLAIN_GET = b"GET /tools/echo HTTP/1.1\r\nHost: localhost\r\n\r\n"
MESSAGE = {"message": "The plain HTTP request was sent to HTTPS port"}
TLS_GET = b"GET /tools/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


async def _read_until_eof(reader: asyncio.StreamReader, within: float = 10.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; `eof` False if it is still open at the end."""
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionError:
        return b"".join(chunks), True
    return b"".join(chunks), True


async def _plain(port: int, data: bytes, *, close_after: bool = True) -> tuple[bytes, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_after:
            return await _read_until_eof(reader)
        # read the answer but keep our side open: the gateway must still let go
        return await _read_until_eof(reader, within=15)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


def _assert_plain_http_answer(data: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request", data[:300]
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert int(headers[b"content-length"]) == len(body), "exactly one response, nothing after it"
    assert orjson.loads(body) == MESSAGE


async def test_plain_http_request_on_the_tls_port_gets_400_then_eof(
    backend: Backend, gateway: GatewayFactory
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], strip_path=True)])
    data, eof = await _plain(gw.port, PLAIN_GET)
    assert eof, "the gateway kept the plain connection open"
    _assert_plain_http_answer(data)
    assert gw.access_log() == [], "a plain request was served as a request"


async def test_lowercase_or_partial_plain_requests_are_answered_too(
    backend: Backend, gateway: GatewayFactory
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], strip_path=True)])
    for data in (b"P", b"post /x HTTP/1.0\r\n\r\n", b"GET /" + b"a" * 30_000):
        answer, eof = await _plain(gw.port, data)
        assert eof
        _assert_plain_http_answer(answer)


async def test_bytes_that_are_neither_tls_nor_http_get_no_http_answer(
    backend: Backend, gateway: GatewayFactory
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"], strip_path=True)], handshake_timeout_seconds=1
    )
    data, eof = await _plain(gw.port, b"\x00\x01\x02garbage\r\n\r\n")
    assert eof
    assert b"HTTP/" not in data


async def test_answered_plain_client_that_never_closes_is_closed_after_handshake_timeout(
    backend: Backend, gateway: GatewayFactory
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"], strip_path=True)],
        handshake_timeout_seconds=1,
        header_timeout_seconds=600,
        keepalive_timeout_seconds=600,
    )
    data, eof = await _plain(gw.port, PLAIN_GET, close_after=False)
    assert eof, "a plain client holding its side open kept the connection"
    _assert_plain_http_answer(data)


async def test_plain_attempts_give_their_slots_back_exactly_once(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"], strip_path=True)],
        max_connections=2,
        handshake_timeout_seconds=1,
    )
    for _ in range(10):
        data, eof = await _plain(gw.port, PLAIN_GET)
        assert eof
        _assert_plain_http_answer(data)
    # a client that connects and leaves without a byte, and one that half-closes at once
    for how in (socket.SHUT_RDWR, socket.SHUT_WR):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.shutdown(how)
    # both slots are free (not leaked): two kept-alive TLS clients are served...
    held = [await _keep_alive(gw.port, client_ssl) for _ in range(2)]
    # ...and no more than two (not given back twice): a third waits for a slot
    third = asyncio.create_task(raw_exchange(gw.port, client_ssl, TLS_GET))
    try:
        done, _ = await asyncio.wait({third}, timeout=1.0)
        assert not done, "a connection beyond max_connections was served"
        held.pop().close()
        response = await asyncio.wait_for(third, 15)
    finally:
        third.cancel()
        for writer in held:
            writer.close()
    assert status_of(response) == 200, response[:300]


async def _keep_alive(port: int, client_ssl: ssl.SSLContext) -> asyncio.StreamWriter:
    """A TLS connection answered once and kept open, holding its slot."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost"
    )
    writer.write(TLS_GET.replace(b"Connection: close\r\n", b""))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    assert status_of(head) == 200, head[:300]
    return writer


def test_plain_http_is_answered_on_uvloop(
    tmp_path: Path, dev_cert: tls.DevCertificate, client_ssl: ssl.SSLContext
) -> None:
    """The workers run uvloop: the peek's reader must hand the socket over cleanly there."""

    async def scenario() -> tuple[bytes, bool, bytes]:
        settings = load_settings(write_config(tmp_path, dev_cert, [], max_connections=1))
        await prepare_store(settings)
        sock = bind(Address("127.0.0.1", 0))
        port = sock.getsockname()[1]
        gw = Gateway(settings)
        await gw.start([sock], [], [bind(Address("127.0.0.1", 0))])
        try:
            data, eof = await _plain(port, PLAIN_GET)
            over_tls = await asyncio.wait_for(raw_exchange(port, client_ssl, TLS_GET), 15)
        finally:
            await gw.stop(1.0)
        return data, eof, over_tls

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        data, eof, over_tls = runner.run(scenario())
    assert eof
    _assert_plain_http_answer(data)
    assert status_of(over_tls) == 404, over_tls[:300]  # no routes: the gateway's own 404
