"""The upstream leg (proxy/connection.py, proxy/upstream.py) against real upstream sockets:
keep-alive reuse, the `max_connections` cap, every response framing, interim answers,
malformed answers, and TLS to the service."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from edgeauth import tls
from edgeauth.errors import UpstreamUnreachable
from edgeauth.proxy.upstream import request_head
from tests.conftest import GatewayFactory, service

BAD_GATEWAY = {"message": "An invalid response was received from the upstream server"}


@contextlib.asynccontextmanager
async def _app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _raw(answer: bytes, *, close: bool) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A socket upstream that reads one request head and writes `answer` as given."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


async def test_sequential_requests_reuse_one_upstream_connection(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    peers: set[object] = set()

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"n": len(peers)})

    async with _app(handler) as port:
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"])])
        for _ in range(20):
            async with client.get(f"{gw.url}/x") as resp:
                assert resp.status == 200
                await resp.read()
    assert len(peers) == 1


async def test_max_connections_caps_the_connections_opened_and_every_request_is_served(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    peers: set[object] = set()
    running = 0
    most = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal running, most
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return web.Response(text="ok")

    async with _app(handler) as port:
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"], max_connections=2)])
        connector = aiohttp.TCPConnector(ssl=client_ssl, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.get(f"{gw.url}/x") as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(one() for _ in range(8)))
    assert statuses == [200] * 8
    assert most == 2
    assert len(peers) == 2


async def test_a_body_framed_by_the_connection_close_arrives_whole(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    body = b"until-eof " * 5000
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + body
    async with _raw(answer, close=True) as (port, _):
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"])])
        for _ in range(2):  # the closed connection is not pooled: the second opens a new one
            async with client.get(f"{gw.url}/x") as resp:
                assert resp.status == 200
                assert await resp.read() == body


async def test_an_interim_100_from_upstream_is_skipped_and_the_final_answer_relayed(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Up: yes\r\n\r\ndone"
    )
    async with _raw(answer, close=False) as (port, heads):
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"])])
        for _ in range(2):
            async with client.post(f"{gw.url}/x", data=b"abc") as resp:
                assert resp.status == 201
                assert resp.headers["X-Up"] == "yes"
                assert await resp.read() == b"done"
    assert len(heads) == 2
    assert heads[0].startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:")


@pytest.mark.parametrize(
    "answer",
    [
        b"this is not http\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 2000 Nope\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
    ],
    ids=["garbage", "two-lengths", "bad-status", "upgrade"],
)
async def test_a_malformed_upstream_answer_is_502_json(
    gateway: GatewayFactory, client: aiohttp.ClientSession, answer: bytes
) -> None:
    async with _raw(answer, close=True) as (port, _):
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"])])
        async with client.get(f"{gw.url}/x") as resp:
            assert resp.status == 502
            assert await resp.json() == BAD_GATEWAY
        async with client.get(f"{gw.url}/x") as resp:  # and the worker goes on serving
            assert resp.status == 502


async def test_https_upstream_is_verified_against_ca_file(
    gateway: GatewayFactory, client: aiohttp.ClientSession, dev_cert: tls.DevCertificate
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev_cert.cert_file, dev_cert.key_file)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"tls": request.secure})

    async with _app(handler, server_ctx) as port:
        url = f"https://localhost:{port}"
        gw = await gateway(
            [
                service("trusted", url, ["/trusted"], ca_file=str(dev_cert.ca_file)),
                service("untrusted", url, ["/untrusted"]),
                service("unverified", url, ["/unverified"], tls_verify=False),
            ]
        )
        async with client.get(f"{gw.url}/trusted/x") as resp:
            assert resp.status == 200
            assert await resp.json() == {"tls": True}
        async with client.get(f"{gw.url}/untrusted/x") as resp:
            assert resp.status == 502
        async with client.get(f"{gw.url}/unverified/x") as resp:
            assert resp.status == 200


def test_a_header_value_that_would_split_a_line_is_never_sent() -> None:
    ok = request_head("GET", "/x", "up", [("X-A", "1")], "\r\n")
    assert ok == b"GET /x HTTP/1.1\r\nHost: up\r\nX-A: 1\r\n\r\n"
    for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb"):
        with pytest.raises(UpstreamUnreachable):
            request_head("GET", "/x", "up", [("X-Consumer-Username", value)], "\r\n")


async def test_a_close_delimited_body_cut_by_a_reset_is_an_error_downstream(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"partial " * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST: the body did not end, it was cut

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await gateway([service("up", f"http://127.0.0.1:{port}", ["/"])])
        async with client.get(f"{gw.url}/x") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    finally:
        server.close()
