"""The edge's own limits: head deadline and size, TLS floor, connection and request caps
(design §2 `[server]`, §9).

Every test talks to an in-process gateway over real TLS sockets. Waits are bounded polling
loops that assert what happened (closed, refused, answered), never how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from edgeauth import tls
from tests.conftest import (
    Backend,
    GatewayFactory,
    body_of,
    raw_exchange,
    service,
    status_of,
)

MARKER = "Zq7MarkerNeverEchoed"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_tls(port: int, ctx: ssl.SSLContext) -> Streams:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def _read_until_eof(reader: asyncio.StreamReader, within: float = 10.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; `eof` False if it is still open at the end."""
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return b"".join(chunks), False
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return b"".join(chunks), False
        except (ConnectionError, ssl.SSLError):
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


async def _read_response(reader: asyncio.StreamReader, within: float = 10.0) -> bytes:
    """One response framed by Content-Length; the connection stays open."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), within)
    return head + body


async def _exchange_until_close(
    port: int, ctx: ssl.SSLContext, request: bytes, within: float = 10.0
) -> tuple[bytes, bool]:
    reader, writer = await _open_tls(port, ctx)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await _read_until_eof(reader, within)
    finally:
        await _close(writer)


def _assert_fixed_json(response: bytes, status: int) -> dict[str, Any]:
    assert status_of(response) == status, response[:300]
    head = response.partition(b"\r\n\r\n")[0].lower()
    assert b"content-type: application/json" in head
    body = body_of(response)
    assert isinstance(body, dict)
    assert set(body) == {"message"}
    assert isinstance(body["message"], str)
    assert body["message"]
    assert MARKER.encode() not in response
    return body


# ---- slow and silent clients -------------------------------------------------------------


async def _trickle_head(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[bytes, bool]:
    """Send one header byte per 0.3 s, never ending the head; what came back, and closed?"""
    trickle = f"X-Slow-{MARKER}: " + "a" * 200
    # a 1 s deadline at one byte per 0.3 s: ~4 iterations, then 20 more at most
    for byte in trickle.encode()[:24]:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            return b"", True
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.3)
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError):
            return b"", True
        if not chunk:
            return b"", True
        rest, closed = await _read_until_eof(reader)
        return chunk + rest, closed
    return b"", False


async def test_slowloris_head_is_cut_off_with_408_before_it_completes(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], header_timeout_seconds=1)
    reader, writer = await _open_tls(gw.port, client_ssl)
    try:
        writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
        await writer.drain()
        received, closed = await _trickle_head(reader, writer)
    finally:
        await _close(writer)
    assert received, "the server never answered the unfinished head"
    assert closed, "the server kept the slowloris connection open"
    body = _assert_fixed_json(received, 408)
    assert body == {"message": "Request header timeout"}
    # never dispatched: nothing but the 408 itself may be logged
    assert all(e["status"] == 408 for e in gw.access_log())


async def test_slowloris_on_a_kept_alive_connection_is_cut_off_too(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/"])],
        header_timeout_seconds=1,
        keepalive_timeout_seconds=600,
    )
    reader, writer = await _open_tls(gw.port, client_ssl)
    try:
        writer.write(b"GET /echo/first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        assert status_of(await _read_response(reader)) == 200
        writer.write(b"GET /echo/second HTTP/1.1\r\n")
        await writer.drain()
        received, closed = await _trickle_head(reader, writer)
    finally:
        await _close(writer)
    assert received, "the server never answered the unfinished second head"
    assert closed
    assert _assert_fixed_json(received, 408) == {"message": "Request header timeout"}
    served = [e["path"] for e in gw.access_log() if e["status"] != 408]
    assert served == ["/echo/first"]


async def test_silent_tls_connection_is_closed_after_header_timeout(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/"])],
        header_timeout_seconds=1,
        keepalive_timeout_seconds=600,
    )
    reader, writer = await _open_tls(gw.port, client_ssl)
    try:
        data, eof = await _read_until_eof(reader, within=10)
    finally:
        await _close(writer)
    assert eof, "a TLS connection that never sent a byte was kept open"
    assert data == b""  # nothing was said, so nothing is answered


async def test_tcp_connection_without_tls_handshake_is_closed_after_handshake_timeout(
    backend: Backend, gateway: GatewayFactory
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/"])],
        handshake_timeout_seconds=1,
        header_timeout_seconds=600,
        keepalive_timeout_seconds=600,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        data, eof = await _read_until_eof(reader, within=10)
    finally:
        await _close(writer)
    assert eof, "a TCP connection that never started TLS was kept open"
    assert data == b""


# ---- TLS floor and parameters ------------------------------------------------------------


def _client_context(
    ca_file: str, maximum: ssl.TLSVersion, minimum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca_file)
    with warnings.catch_warnings():
        # Asking for TLS 1.0/1.1 is deprecated, which is exactly what these clients do.
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> str | None:
    """A blocking client handshake (run in a thread): the negotiated version, or SSLError.

    The gateway refuses by closing during the handshake; a blocking ssl socket reports that
    as ssl.SSLError (an alert, or an EOF in violation of the protocol) whatever the loop.
    """
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost") as tls_sock,
    ):
        return tls_sock.version()


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"]
)
async def test_tls_below_1_2_is_refused(
    backend: Backend,
    gateway: GatewayFactory,
    dev_cert: tls.DevCertificate,
    version: ssl.TLSVersion,
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    ctx = _client_context(str(dev_cert.ca_file), maximum=version, minimum=ssl.TLSVersion.TLSv1)
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, gw.port, ctx)


async def test_tls_1_2_client_is_served_with_aead_and_no_compression(
    backend: Backend, gateway: GatewayFactory, dev_cert: tls.DevCertificate
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    ctx = _client_context(str(dev_cert.ca_file), maximum=ssl.TLSVersion.TLSv1_2)
    reader, writer = await _open_tls(gw.port, ctx)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ssl_object.version() == "TLSv1.2"
        assert ssl_object.compression() is None
        cipher = ssl_object.cipher()
        assert cipher is not None
        name = cipher[0]
        assert "GCM" in name or "CHACHA20-POLY1305" in name, name
        assert name.startswith(("ECDHE-", "DHE-")), name  # forward secrecy
        writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        response = await _read_response(reader)
    finally:
        await _close(writer)
    assert status_of(response) == 200
    assert body_of(response)["path"] == "/echo"
    assert gw.access_log()[0]["tls_version"] == "TLSv1.2"


async def test_tls_1_3_client_gets_an_aead_suite_and_no_compression(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    _, writer = await _open_tls(gw.port, client_ssl)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ssl_object.version() == "TLSv1.3"
        assert ssl_object.compression() is None
        cipher = ssl_object.cipher()
        assert cipher is not None
        assert cipher[0] in (
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        )
        assert ssl_object.selected_alpn_protocol() in (None, "http/1.1")
    finally:
        await _close(writer)


async def test_tls_min_version_1_3_refuses_a_tls_1_2_client(
    backend: Backend,
    gateway: GatewayFactory,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], tls_min_version="1.3")
    ctx = _client_context(str(dev_cert.ca_file), maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, gw.port, ctx)
    # ...while a TLS 1.3 client is still served
    raw = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert status_of(await raw_exchange(gw.port, client_ssl, raw)) == 200


# ---- bounded heads -----------------------------------------------------------------------


async def test_request_line_over_the_limit_gets_414_json_and_close(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    path = "/echo/" + MARKER + "a" * 8200
    raw = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    response, eof = await _exchange_until_close(gw.port, client_ssl, raw)
    _assert_fixed_json(response, 414)
    assert eof, "the connection stayed open after a 414"


async def test_request_line_just_under_the_limit_is_served(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    line_overhead = len("GET  HTTP/1.1")
    path = "/echo/" + "a" * (8000 - line_overhead - len("/echo/"))
    raw = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    response = await raw_exchange(gw.port, client_ssl, raw)
    assert status_of(response) == 200, response[:300]
    assert body_of(response)["path"] == path


def _request_with_headers(count: int) -> bytes:
    """`count` header lines in all, Host and Connection: close included."""
    lines = ["GET /echo HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"X-H{i}: {MARKER}" for i in range(count - 2)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_101_headers_get_431_json_and_close(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    response, eof = await _exchange_until_close(gw.port, client_ssl, _request_with_headers(101))
    _assert_fixed_json(response, 431)
    assert eof


async def test_100_headers_are_accepted(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    response = await raw_exchange(gw.port, client_ssl, _request_with_headers(100))
    assert status_of(response) == 200, response[:300]


@pytest.mark.parametrize(
    ("max_header_bytes", "count", "size"),
    [
        pytest.param(32768, 5, 8000, id="40KB-over-several-tls-records"),
        pytest.param(4096, 3, 3000, id="9KB-in-one-tls-record"),
    ],
)
async def test_total_header_bytes_over_the_limit_get_431_json(
    backend: Backend,
    gateway: GatewayFactory,
    client_ssl: ssl.SSLContext,
    max_header_bytes: int,
    count: int,
    size: int,
) -> None:
    """Each header is under the limit on its own; together they are well over it."""
    gw = await gateway([service("tools", backend.url, ["/"])], max_header_bytes=max_header_bytes)
    # Connection: close, so that a wrongly served request does not idle until keep-alive ends
    lines = ["GET /echo HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"X-Big-{i}: {MARKER}" + "b" * size for i in range(count)]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    assert len(raw) > max_header_bytes + 1000
    response, eof = await _exchange_until_close(gw.port, client_ssl, raw)
    _assert_fixed_json(response, 431)
    assert eof
    # never forwarded: nothing but the 431 itself may be logged
    assert all(e["status"] == 431 for e in gw.access_log())


async def test_total_header_bytes_under_the_limit_are_served(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], max_header_bytes=32768)
    lines = ["GET /echo HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"X-Big-{i}: " + "b" * 8000 for i in range(4)]  # ~32.1 KB of header lines
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    response = await raw_exchange(gw.port, client_ssl, raw)
    assert status_of(response) == 200, response[:300]


async def test_head_that_keeps_growing_gets_431_and_close(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    reader, writer = await _open_tls(gw.port, client_ssl)
    answer = asyncio.create_task(_read_until_eof(reader, within=15))
    try:
        writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
        # 1 KB header lines, few enough never to reach max_header_count, without an end;
        # at most 256 KB in all, eight times the 32 KB limit.
        for i in range(90):
            if answer.done():
                break
            line = f"X-Grow-{i}: {MARKER}".encode()
            writer.write(line + b"g" * (1000 - len(line)) + b"\r\n")
            try:
                await asyncio.wait_for(writer.drain(), 5)
            except (ConnectionError, ssl.SSLError, TimeoutError):
                break
            await asyncio.sleep(0)
        response, eof = await asyncio.wait_for(answer, 20)
    finally:
        answer.cancel()
        await _close(writer)
    _assert_fixed_json(response, 431)
    assert eof


# ---- capacity ----------------------------------------------------------------------------


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_inflight_limit_answers_fast_503_then_recovers(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], max_inflight_requests=1)

    async def slow() -> tuple[int, Any]:
        async with client.get(f"{gw.url}/slow/1500") as resp:
            return resp.status, await resp.json()

    first = asyncio.create_task(slow())
    try:
        await _until(lambda: backend.stats["slow_started"] == 1)
        async with client.get(f"{gw.url}/echo") as resp:
            assert resp.status == 503
            assert resp.headers["Content-Type"] == "application/json"
            assert int(resp.headers["Retry-After"]) >= 1
            assert await resp.json() == {"message": "The gateway is at capacity, retry shortly"}
        assert not first.done()
        assert await asyncio.wait_for(first, 10) == (200, {"slept_ms": 1500})
    finally:
        first.cancel()
    async with client.get(f"{gw.url}/echo") as resp:
        assert resp.status == 200
    statuses = sorted(entry["status"] for entry in gw.access_log())
    assert statuses == [200, 200, 503]


async def test_max_connections_leaves_extra_connections_waiting_until_a_slot_frees(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], max_connections=1)
    reader, writer = await _open_tls(gw.port, client_ssl)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    assert status_of(await _read_response(reader)) == 200  # keep-alive: the slot stays taken
    raw = b"GET /echo/second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    second = asyncio.create_task(raw_exchange(gw.port, client_ssl, raw))
    try:
        done, _ = await asyncio.wait({second}, timeout=1.0)
        assert not done, "a connection beyond max_connections was served"
        await _close(writer)
        response = await asyncio.wait_for(second, 10)
    finally:
        second.cancel()
        await _close(writer)
    assert status_of(response) == 200, response[:300]
    assert body_of(response)["path"] == "/echo/second"


async def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], keepalive_timeout_seconds=1)
    reader, writer = await _open_tls(gw.port, client_ssl)
    try:
        writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        response = await _read_response(reader)
        assert status_of(response) == 200
        assert b"connection: close" not in response.lower()  # it was kept alive...
        data, eof = await _read_until_eof(reader, within=10)
    finally:
        await _close(writer)
    assert eof, "an idle keep-alive connection was never closed"  # ...and then closed
    assert data == b""


async def test_requests_ended_by_client_aborts_and_errors_free_their_inflight_slot(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"])],
        max_inflight_requests=1,
    )

    async def give_up_later() -> None:
        async with client.get(f"{gw.url}/tools/slow/5000") as resp:
            await resp.read()

    # a client that gives up mid-request
    aborted = asyncio.create_task(give_up_later())
    await _until(lambda: backend.stats["slow_started"] == 1)
    aborted.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await aborted
    await _until(lambda: backend.stats["slow_cancelled"] == 1)
    # errors answered by the gateway itself
    async with client.get(f"{gw.url}/nowhere") as resp:
        assert resp.status == 404
    # the one slot is free again: not a 503
    for _ in range(3):
        async with client.get(f"{gw.url}/tools/echo") as resp:
            assert resp.status == 200, await resp.text()


async def test_failed_handshakes_give_their_connection_slot_back(
    backend: Backend,
    gateway: GatewayFactory,
    client_ssl: ssl.SSLContext,
    dev_cert: tls.DevCertificate,
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])], max_connections=1)
    # a refused protocol version
    old = _client_context(
        str(dev_cert.ca_file), maximum=ssl.TLSVersion.TLSv1_1, minimum=ssl.TLSVersion.TLSv1
    )
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, gw.port, old)
    # plain HTTP on the TLS port
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    _, eof = await _read_until_eof(reader)
    await _close(writer)
    assert eof
    # a client that connects and leaves before saying anything
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    await _close(writer)
    # the single slot is free for a real client
    raw = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    response = await asyncio.wait_for(raw_exchange(gw.port, client_ssl, raw), 10)
    assert status_of(response) == 200, response[:300]
