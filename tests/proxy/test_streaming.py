"""Bodies that stream through the gateway: limits, Expect: 100-continue, big transfers (§5)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.conftest import (
    Backend,
    GatewayFactory,
    body_of,
    raw_exchange,
    service,
    status_of,
)

KiB = 1024
MiB = 1024 * KiB
LIMIT = 1 * MiB
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TOO_LARGE = {"message": "Request size limit exceeded"}
PROTECTED = {"scopes": ["read"], "enable_client_credentials": True, "provision_key": "pk"}


def _pattern(size: int) -> bytes:
    """A body that is not all zeros, so that a reordered or repeated chunk changes its digest."""
    block = hashlib.sha256(b"edgeauth").digest() * 2048  # 64 KiB
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def _echo_headers(echo: dict[str, Any]) -> set[str]:
    return {str(name).lower() for name, _ in echo["headers"]}


async def _chunks(data: bytes, size: int = 64 * KiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@contextlib.asynccontextmanager
async def _tls(
    port: int, client_ssl: ssl.SSLContext
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost"
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head, body


@contextlib.asynccontextmanager
async def _app(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on 127.0.0.1:0 and yield its base URL."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# --- request body limits ---------------------------------------------------------------------


async def test_chunked_upload_over_the_limit_is_cut_with_413_and_never_completes_upstream(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    # A sink that records how each upload it saw ended: a gateway that ended the upstream
    # body early but cleanly would let a truncated upload pass for a complete one.
    outcomes: list[tuple[str, int]] = []

    async def sink(request: web.Request) -> web.Response:
        size = 0
        outcome = "complete"
        try:
            async for chunk in request.content.iter_any():
                size += len(chunk)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            outcomes.append((outcome, size))
        return web.json_response({"received": size})

    app = web.Application()
    app.router.add_post("/sink", sink)
    async with _app(app) as url:
        gw = await gateway([service("up", url, ["/"], max_request_body_bytes=LIMIT)])
        answered = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            async for chunk in _chunks(_pattern(LIMIT + 256 * KiB)):
                yield chunk
            # Hold the rest of the upload back until the answer is in, as a client that
            # reads while it writes would; a gateway that waits for the end gets it anyway.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), 5)
            yield _pattern(64 * KiB)

        async with asyncio.timeout(20):
            async with client.post(f"{gw.url}/sink", data=body()) as resp:
                answered.set()
                assert resp.status == 413
                assert resp.headers["Content-Type"] == "application/json"
                assert await resp.json() == TOO_LARGE
            for _ in range(100):
                if outcomes:
                    break
                await asyncio.sleep(0.05)
    assert outcomes, "the upstream never saw the upload start"
    assert all(outcome != "complete" for outcome, _ in outcomes), outcomes
    assert all(size <= LIMIT for _, size in outcomes), outcomes


async def test_chunked_upload_over_the_limit_to_the_sample_sink_is_413_not_200(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=LIMIT)])
    answered = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        async for chunk in _chunks(_pattern(2 * LIMIT)):
            yield chunk
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), 5)

    async with asyncio.timeout(20), client.put(f"{gw.url}/sink", data=body()) as resp:
        answered.set()
        assert resp.status == 413
        assert await resp.json() == TOO_LARGE
        assert len(resp.headers["X-Request-ID"]) == 32
    entries = [e for e in gw.access_log() if e["path"] == "/sink"]
    assert [e["status"] for e in entries] == [413]
    assert entries[0]["request_id"] == resp.headers["X-Request-ID"]


async def test_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=LIMIT)])
    # Only the head is sent: if the gateway waited for the body, no answer would come.
    head = (
        f"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: {LIMIT + 1}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    response = await raw_exchange(gw.port, client_ssl, head, read_timeout=5)
    assert status_of(response) == 413, response
    assert body_of(response) == TOO_LARGE
    assert b"\r\ncontent-type: application/json\r\n" in response.lower()


async def test_declared_length_at_the_limit_is_accepted(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=LIMIT)])
    async with client.post(f"{gw.url}/sink", data=_pattern(LIMIT)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"received": LIMIT}


async def test_expect_continue_with_declared_length_over_the_limit_gets_413_and_no_100(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=LIMIT)])
    head = (
        f"PUT /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: {8 * LIMIT}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    response = await raw_exchange(gw.port, client_ssl, head, read_timeout=5)
    assert b"100 Continue" not in response
    assert response.startswith(b"HTTP/1.1 413 "), response
    assert body_of(response) == TOO_LARGE


# --- Expect: 100-continue --------------------------------------------------------------------


async def test_expect_continue_on_an_allowed_request_gets_100_then_the_upstream_answer(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=LIMIT)])
    payload = _pattern(300 * KiB)
    head = (
        f"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(payload)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    async with _tls(gw.port, client_ssl) as (reader, writer):
        writer.write(head)
        await writer.drain()
        # Nothing of the body has been sent yet: the interim answer must come first.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == CONTINUE
        writer.write(payload)
        await writer.drain()
        final, body = await _read_response(reader)
    assert final.startswith(b"HTTP/1.1 200 "), final
    echo = orjson.loads(body)
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert "expect" not in _echo_headers(echo)


async def test_expect_continue_through_aiohttp_client_sees_the_whole_body_forwarded(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    payload = _pattern(2 * MiB + 7)
    async with client.post(f"{gw.url}/echo", data=io.BytesIO(payload), expect100=True) as resp:
        assert resp.status == 200
        echo = await resp.json()
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert "expect" not in _echo_headers(echo)


async def test_expect_continue_to_a_protected_service_is_401_without_100(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("events", backend.url, ["/events"], oauth2=PROTECTED)])
    head = (
        b"POST /events/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    response = await raw_exchange(gw.port, client_ssl, head, read_timeout=5)
    assert b"100 Continue" not in response
    assert status_of(response) == 401, response
    assert b"\r\ncontent-type: application/json\r\n" in response.lower()


# --- big transfers ---------------------------------------------------------------------------


async def test_multi_mib_download_arrives_complete_and_byte_exact(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    size = 32 * MiB
    digest = hashlib.sha256()
    received = 0
    async with client.get(f"{gw.url}/bytes/{size}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(size)
        async for chunk in resp.content.iter_chunked(256 * KiB):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(bytes(size)).hexdigest()


async def test_multi_mib_upload_with_length_arrives_byte_exact(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=64 * MiB)])
    payload = _pattern(32 * MiB + 3)
    async with client.post(f"{gw.url}/echo", data=io.BytesIO(payload)) as resp:
        assert resp.request_info.headers["Content-Length"] == str(len(payload))
        assert resp.status == 200
        echo = await resp.json()
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


async def test_multi_mib_chunked_upload_to_sink_arrives_complete(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=64 * MiB)])
    payload = _pattern(32 * MiB)
    async with client.post(f"{gw.url}/sink", data=_chunks(payload, 100_000)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"received": len(payload)}
    async with client.post(f"{gw.url}/echo", data=_chunks(payload, 100_000)) as resp:
        echo = await resp.json()
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert "transfer-encoding" in _echo_headers(echo)  # the upstream leg is chunked too


async def test_zero_limit_means_unlimited(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], max_request_body_bytes=0)])
    payload = _pattern(12 * MiB)
    async with client.post(f"{gw.url}/sink", data=io.BytesIO(payload)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"received": len(payload)}
    async with client.post(f"{gw.url}/sink", data=_chunks(payload)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"received": len(payload)}


async def test_the_default_limit_refuses_what_zero_lets_through(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])  # default 10 MiB
    async with client.post(f"{gw.url}/sink", data=io.BytesIO(_pattern(12 * MiB))) as resp:
        assert resp.status == 413
        assert await resp.json() == TOO_LARGE


# --- response framing ------------------------------------------------------------------------


async def test_chunked_upstream_response_streams_back_whole(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    pieces = [_pattern(n) for n in (1, 1000, 64 * KiB, 3 * MiB, 17)]

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    async with _app(app) as url:
        gw = await gateway([service("up", url, ["/"])])
        async with client.get(f"{gw.url}/chunked") as resp:
            assert resp.status == 200
            assert "Content-Length" not in resp.headers
            assert resp.headers["Transfer-Encoding"] == "chunked"
            body = await resp.read()
    assert body == b"".join(pieces)


async def test_small_and_length_framed_responses_keep_their_bodies(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    async with client.get(f"{gw.url}/echo") as resp:
        assert resp.status == 200
        raw = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(raw)
    assert orjson.loads(raw)["path"] == "/echo"
    for n in (0, 1, 65535, 65536, 65537):
        async with client.get(f"{gw.url}/bytes/{n}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(n)
            assert await resp.read() == bytes(n)


async def test_head_gets_content_length_and_no_body(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    request = b"HEAD /bytes/100 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    async with _tls(gw.port, client_ssl) as (reader, writer):
        writer.write(
            request + b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        # The very next bytes on the connection must be the second response, not a body.
        second, body = await _read_response(reader)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"\r\ncontent-length: 100\r\n" in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert second.startswith(b"HTTP/1.1 200 "), second
    assert orjson.loads(body)["method"] == "GET"


async def test_head_through_the_gateway_keeps_the_length_and_sends_no_body(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    # The same check against an upstream that frames HEAD correctly, so that a failure here
    # is the gateway's own.
    async def head_only(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = 100
        await resp.prepare(request)
        if request.method != "HEAD":
            await resp.write(bytes(100))
        await resp.write_eof()
        return resp

    async def method_name(request: web.Request) -> web.Response:
        return web.Response(text=request.method)

    app = web.Application()
    app.router.add_get("/bytes/100", head_only)  # also answers HEAD
    app.router.add_get("/next", method_name)
    async with _app(app) as url:
        gw = await gateway([service("up", url, ["/"])])
        pipelined = (
            b"HEAD /bytes/100 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        async with _tls(gw.port, client_ssl) as (reader, writer):
            writer.write(pipelined)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            second, body = await _read_response(reader)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"\r\ncontent-length: 100\r\n" in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert second.startswith(b"HTTP/1.1 200 "), second
    assert body == b"GET"
