"""When the upstream or the client fails: 502, 504, aborts, truncation, bad requests (§5.6)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import (
    Backend,
    GatewayFactory,
    body_of,
    free_port_refused,
    raw_exchange,
    service,
    status_of,
)

KiB = 1024
MiB = 1024 * KiB
BAD_GATEWAY = {"message": "An invalid response was received from the upstream server"}
TIMED_OUT = {"message": "The upstream server is timing out"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def _app(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """A throwaway aiohttp upstream on 127.0.0.1:0 serving `routes` (any method)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _abort(request: web.Request) -> None:
    transport = request.transport
    assert transport is not None
    transport.abort()


async def _poll(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Wait until `condition()` holds, at most `seconds`; return whether it did."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def _outcome(client: aiohttp.ClientSession, url: str) -> str:
    """How a download through the gateway ended, as seen by a careful client."""
    try:
        async with asyncio.timeout(10), client.get(url) as resp:
            body = await resp.read()
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        return "error"
    except TimeoutError:
        return "stuck: neither complete nor cut within 10 s"
    return f"complete: status {resp.status}, {len(body)} bytes"


def _assert_json_error(resp: aiohttp.ClientResponse, status: int) -> None:
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json"
    assert len(resp.headers["X-Request-ID"]) == 32


# --- 502 / 504 -------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [None, 0])
async def test_refused_upstream_is_502_json_with_a_request_id(
    gateway: GatewayFactory, client: aiohttp.ClientSession, retries: int | None
) -> None:
    extra: dict[str, Any] = {} if retries is None else {"retries": retries}
    url = f"http://127.0.0.1:{free_port_refused()}"
    gw = await gateway([service("down", url, ["/"], **extra)])
    for method in ("GET", "POST"):
        async with client.request(method, f"{gw.url}/anything", data=b"x" * 10) as resp:
            _assert_json_error(resp, 502)
            assert await resp.json() == BAD_GATEWAY
            assert b"Traceback" not in await resp.read()


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_upstream_closing_without_an_answer_is_502_and_an_upload_is_not_replayed(
    gateway: GatewayFactory, client: aiohttp.ClientSession, method: str
) -> None:
    calls: list[str] = []

    async def hang_up(request: web.Request) -> web.StreamResponse:
        calls.append(request.method)
        await request.read()
        _abort(request)
        raise ConnectionResetError

    async with _app({"/hangup": hang_up}) as url:
        gw = await gateway([service("up", url, ["/"], retries=2)])
        async with client.request(method, f"{gw.url}/hangup", data=b"payload") as resp:
            _assert_json_error(resp, 502)
            assert await resp.json() == BAD_GATEWAY
    # The body was sent and read: a replay could apply the upload twice.
    assert calls == [method]


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_get_the_upstream_received_is_not_replayed(
    gateway: GatewayFactory, client: aiohttp.ClientSession, retries: int
) -> None:
    # `retries` covers connect failures only, before any byte was sent (design §2): this
    # upstream read the whole request on a fresh connection before hanging up.
    calls: list[str] = []

    async def hang_up(request: web.Request) -> web.StreamResponse:
        calls.append(request.method)
        _abort(request)
        raise ConnectionResetError

    async with _app({"/hangup": hang_up}) as url:
        gw = await gateway([service("up", url, ["/"], retries=retries)])
        async with client.get(f"{gw.url}/hangup") as resp:
            _assert_json_error(resp, 502)
            assert await resp.json() == BAD_GATEWAY
    assert calls == ["GET"]


async def test_upstream_slower_than_read_timeout_is_504(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"], read_timeout_seconds=0.5)])
    async with asyncio.timeout(10), client.get(f"{gw.url}/slow/3000") as resp:
        _assert_json_error(resp, 504)
        assert await resp.json() == TIMED_OUT
    assert backend.stats["slow_started"] == 1
    assert backend.stats["slow_finished"] == 0


async def test_upstream_stalling_mid_body_cuts_the_download(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = MiB
        await resp.prepare(request)
        await resp.write(bytes(64 * KiB))
        await asyncio.sleep(5)
        await resp.write(bytes(MiB - 64 * KiB))
        return resp

    async with _app({"/stall": stall}) as url:
        gw = await gateway([service("up", url, ["/"], read_timeout_seconds=0.5)])
        assert await _outcome(client, f"{gw.url}/stall") == "error"
    entries = [e for e in gw.access_log() if e["path"] == "/stall"]
    assert len(entries) == 1
    assert entries[0]["bytes_out"] < MiB


async def test_access_log_records_502_and_504_with_the_request_id_sent_back(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        [
            service("down", f"http://127.0.0.1:{free_port_refused()}", ["/down"]),
            service("slow", backend.url, ["/slow"], strip_path=False, read_timeout_seconds=0.5),
        ]
    )
    async with client.get(f"{gw.url}/down/x") as resp:
        assert resp.status == 502
        refused_id = resp.headers["X-Request-ID"]
    async with asyncio.timeout(10), client.get(f"{gw.url}/slow/3000") as resp:
        assert resp.status == 504
        timeout_id = resp.headers["X-Request-ID"]
    by_id = {e["request_id"]: e for e in gw.access_log()}
    assert by_id[refused_id]["status"] == 502
    assert by_id[refused_id]["path"] == "/down/x"
    assert by_id[refused_id]["service"] == "down"
    assert by_id[timeout_id]["status"] == 504
    assert by_id[timeout_id]["path"] == "/slow/3000"
    assert by_id[timeout_id]["service"] == "slow"
    assert refused_id != timeout_id


# --- the client goes away --------------------------------------------------------------------


async def test_client_abort_cancels_the_upstream_request(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    _, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_ssl, server_hostname="localhost"
    )
    try:
        writer.write(b"GET /slow/5000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        assert await _poll(lambda: backend.stats["slow_started"] == 1)
    finally:
        writer.transport.abort()
    assert await _poll(lambda: backend.stats["slow_cancelled"] == 1), backend.stats
    assert backend.stats["slow_finished"] == 0
    entries = [e for e in gw.access_log() if e["path"] == "/slow/5000"]
    assert len(entries) == 1
    assert entries[0]["status"] != 200
    assert len(entries[0]["request_id"]) == 32


async def test_client_cancelling_an_aiohttp_request_cancels_the_upstream_request(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])

    async def call() -> None:
        async with client.get(f"{gw.url}/slow/5000") as resp:
            await resp.read()

    task = asyncio.create_task(call())
    assert await _poll(lambda: backend.stats["slow_started"] == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _poll(lambda: backend.stats["slow_cancelled"] == 1), backend.stats
    assert backend.stats["slow_finished"] == 0


# --- the upstream dies mid-body --------------------------------------------------------------


async def test_upstream_dying_mid_body_with_a_length_is_an_error_downstream(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = MiB
        await resp.prepare(request)
        await resp.write(bytes(64 * KiB))
        _abort(request)
        raise ConnectionResetError

    async with _app({"/dies": dies, "/ok": _ok}) as url:
        gw = await gateway([service("up", url, ["/"])])
        assert await _outcome(client, f"{gw.url}/dies") == "error"
        # The gateway is still healthy and the dead upstream connection was not reused.
        for _ in range(3):
            async with client.get(f"{gw.url}/ok") as resp:
                assert resp.status == 200
                assert await resp.text() == "ok"


async def test_upstream_dying_mid_chunked_body_is_an_error_downstream(
    gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(bytes(16 * KiB))
        _abort(request)
        raise ConnectionResetError

    async with _app({"/dies": dies, "/ok": _ok}) as url:
        gw = await gateway([service("up", url, ["/"])])
        # A clean end of the chunked stream here would pass 64 KiB off as the whole body.
        assert await _outcome(client, f"{gw.url}/dies") == "error"
        async with client.get(f"{gw.url}/ok") as resp:
            assert await resp.text() == "ok"
    entries = [e for e in gw.access_log() if e["path"] == "/dies"]
    assert len(entries) == 1
    assert entries[0]["bytes_out"] <= 64 * KiB


async def test_upstream_dying_mid_chunked_body_over_raw_tls_never_ends_the_stream(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"partial")
        _abort(request)
        raise ConnectionResetError

    async with _app({"/dies": dies}) as url:
        gw = await gateway([service("up", url, ["/"])])
        raw = b"GET /dies HTTP/1.1\r\nHost: localhost\r\n\r\n"
        response = await raw_exchange(gw.port, client_ssl, raw, read_timeout=5)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response
    assert b"transfer-encoding: chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n"), body  # no last-chunk: the stream was cut


# --- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01garbage\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["garbage", "header-without-colon", "two-lengths", "length-and-chunked", "negative"],
)
async def test_bad_request_is_400_json_and_the_gateway_keeps_serving(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    raw: bytes,
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    response = await raw_exchange(gw.port, client_ssl, raw, read_timeout=5)
    assert status_of(response) == 400, response
    assert body_of(response) == {"message": "Bad request"}
    assert b"\r\ncontent-type: application/json\r\n" in response.lower()
    assert b"Traceback" not in response
    assert b"garbage" not in response.partition(b"\r\n\r\n")[2]
    async with client.get(f"{gw.url}/echo") as resp:
        assert resp.status == 200
        assert (await resp.json())["path"] == "/echo"
