"""The HTTP legs as an attacker meets them (issue 12): desync, stalls, unbounded framing, a
confused upstream. Real TLS downstream, a raw recording upstream that shows exactly which
bytes crossed; h11 reads what the upstream received."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine
from typing import Any

import pytest

from tests.conftest import GatewayFactory, RunningGateway, service
from tests.protocol.test_protocol import _open, _response
from tests.proxy.raw_upstream import RawUpstream, fixed

FAST = {"body_timeout_seconds": 0.5, "request_timeout_seconds": 30}
GET_X = b"GET /raw/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


async def _raw_gateway(
    gateway: GatewayFactory,
    upstream: RawUpstream,
    *,
    svc: dict[str, Any] | None = None,
    **server: Any,
) -> RunningGateway:
    return await gateway([service("raw", upstream.url, ["/raw"], **(svc or {}))], **server)


async def _exchange(port: int, client_ssl: ssl.SSLContext, data: bytes) -> bytes:
    """Send raw bytes; everything read until the gateway closes (or 10 s of quiet)."""
    reader, writer = await _open(port, client_ssl)
    writer.write(data)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            chunks.append(chunk)
    writer.close()
    return b"".join(chunks)


async def _read_while(reader: asyncio.StreamReader, sending: Coroutine[Any, Any, None]) -> bytes:
    """Everything the gateway sends until it closes, while `sending` runs (stopped then)."""
    task = asyncio.ensure_future(sending)
    try:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            return await asyncio.wait_for(reader.read(), 10)
        return b""
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, ssl.SSLError):
            await task


# -- 1. CL.0 desync through Upgrade / CONNECT ------------------------------------------------


@pytest.mark.parametrize(
    "opening",
    [
        b"GET /sample/x HTTP/1.1\r\nHost: t\r\nUpgrade: x\r\nConnection: Upgrade\r\n",
        b"CONNECT t:443 HTTP/1.1\r\nHost: t\r\n",
    ],
    ids=["upgrade", "connect"],
)
async def test_a_body_the_gateway_never_read_cannot_swallow_the_next_clients_request(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, opening: bytes
) -> None:
    """The issue's attack: A declares a body it does not send, the backend answers early, and
    B's body is a request with forged identity headers. Nothing of A may reach the backend, and
    B's body stays B's body."""
    smuggled = (
        b"GET /api/events/echo HTTP/1.1\r\nHost: t\r\nX-Consumer-Username: admin\r\n"
        b"X-Authenticated-Userid: admin\r\n\r\n"
    )
    async with RawUpstream(early=True) as up:
        gw = await gateway(
            [
                service("sample", up.url, ["/sample"]),
                service(
                    "events",
                    up.url + "/api",
                    ["/events"],
                    strip_path=False,
                    oauth2={"enable_client_credentials": True},
                ),
            ]
        )
        a = await _exchange(gw.port, client_ssl, opening + b"Content-Length: 300\r\n\r\n")
        assert a.startswith(b"HTTP/1.1 501 ")
        b = b"POST /sample/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b + smuggled)
        status, _, _ = await _response(reader)
        writer.close()
        assert status == 200
        seen = up.requests()
        assert [(r.method, r.target, body) for r, body in seen] == [(b"POST", b"/echo", smuggled)]
        assert all(not name.startswith(b"x-consumer") for r, _ in seen for name, _ in r.headers)


async def test_the_upstream_length_is_the_gateways_own_and_an_early_answer_is_not_pooled(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    """A GET with a body, answered before its body arrived: the connection carrying the
    half-sent upload is never reused, so the next request cannot become its tail; the client
    connection closes after the answer, and the abandoned body never completes upstream."""
    async with RawUpstream(early=True) as up:
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b"GET /raw/a HTTP/1.1\r\nHost: t\r\ncontent-length:  5 \r\n\r\nhel")
        status, headers, _ = await _response(reader)
        assert (status, headers["connection"]) == (200, "close")  # the body was not all read
        writer.write(b"lo")
        writer.close()
        got = await _exchange(gw.port, client_ssl, GET_X.replace(b"/x", b"/b"))
        assert got.startswith(b"HTTP/1.1 200 ")
        seen = up.requests()
        # /a was answered before its body: it is abandoned, its upstream connection cut
        assert [(r.target, body) for r, body in seen] == [(b"/b", b"")]
        first = up.connections[0]
        await asyncio.wait_for(first.ended.wait(), 10)
        assert b"\r\ncontent-length: 5\r\n" in bytes(first.data).lower()
        assert b"content-length:  5 " not in bytes(first.data)  # computed, not copied
        assert len(up.connections) == 2


async def test_a_streamed_answer_before_the_upload_ended_says_the_connection_closes(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    cut = chunked.index(b"\r\n\r\n") + 4  # the head alone first: the answer streams
    async with RawUpstream(fixed([chunked[:cut], chunked[cut:]]), early=True) as up:
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b"POST /raw/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhel")
        status, headers, body = await _response(reader)
        writer.close()
        assert (status, body, headers["connection"]) == (200, b"ok", "close")


async def test_an_answer_framed_by_the_upstreams_close_is_relayed_whole(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    """`Transfer-Encoding: gzip` without chunked: the body ends with the connection."""
    async with RawUpstream(fixed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc")) as up:
        up.close_after = lambda head: True
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, GET_X)
        assert got.startswith(b"HTTP/1.1 200 ")
        assert got.endswith(b"3\r\nabc\r\n0\r\n\r\n")  # re-framed, and whole


GET_X_10 = b"GET /raw/x HTTP/1.0\r\nHost: t\r\n\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_an_http10_client_gets_a_chunked_answer_whole_with_its_length(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    """HTTP/1.0 has no chunked framing: the gateway reads the answer ahead and sends its
    length, rather than a body only the close would end."""
    async with RawUpstream(fixed([CHUNKED_HEAD + b"3\r\nabc\r\n", b"2\r\nde\r\n0\r\n\r\n"])) as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, GET_X_10)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nContent-Length: 5" in head
        assert body == b"abcde"


async def test_an_http10_client_never_gets_a_cut_chunked_answer_as_a_whole_one(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    """The service sends its whole body but ends the connection before the last chunk: to an
    HTTP/1.0 client a body ended by the close would pass for complete, so it gets 502."""
    async with RawUpstream(fixed(CHUNKED_HEAD + b"3\r\nabc\r\n")) as up:
        up.close_after = lambda head: True
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, GET_X_10)
        assert got.startswith(b"HTTP/1.1 502 "), got[:200]
        assert b"abc" not in got.partition(b"\r\n\r\n")[2]


# -- 2. Stalled bodies and the pool wait ------------------------------------------------------


@pytest.mark.parametrize("path", [b"/raw/x", b"/events/oauth2/token"])
async def test_a_stalled_body_gets_408_and_frees_its_slot(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, path: bytes
) -> None:
    async with RawUpstream() as up:
        gw = await gateway(
            [
                service("raw", up.url, ["/raw"]),
                service("events", up.url, ["/events"], oauth2={"enable_client_credentials": True}),
            ],
            max_inflight_requests=2,
            **FAST,
        )
        stalled = b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx"
        answers = await asyncio.gather(*(_exchange(gw.port, client_ssl, stalled) for _ in range(2)))
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert answer.count(b"HTTP/1.1") == 1
        ok = await _exchange(
            gw.port, client_ssl, b"GET /raw/y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert ok.startswith(b"HTTP/1.1 200 ")
        assert [r.target for r, _ in up.requests()] == [b"/y"]  # the stalled never completed


async def test_a_body_left_unread_by_an_answer_gets_no_second_answer_when_it_stalls(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await gateway(
            [service("events", up.url, ["/events"], oauth2={"enable_client_credentials": True})],
            body_timeout_seconds=0.2,
        )
        stalled = b"POST /events/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx"
        got = await _exchange(gw.port, client_ssl, stalled)  # read until the lingering close
        assert got.startswith(b"HTTP/1.1 401 ")
        assert got.count(b"HTTP/1.1 ") == 1
        assert up.connections == []


async def test_a_trickling_body_is_cut_at_the_request_deadline(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up, body_timeout_seconds=5, request_timeout_seconds=0.5)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b"POST /raw/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")

        async def trickle() -> None:  # a byte every 0.1 s: moving, but 10 s in all
            for _ in range(100):
                writer.write(b"x")
                await asyncio.sleep(0.1)

        answer = await _read_while(reader, trickle())
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert up.requests() == []


async def test_waiting_for_a_pooled_connection_is_bounded(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream(hold=True) as up:
        gw = await _raw_gateway(
            gateway, up, svc={"max_connections": 1, "pool_timeout_seconds": 0.3}
        )
        first = asyncio.ensure_future(_exchange(gw.port, client_ssl, GET_X))
        await up.connected.wait()
        second = await _exchange(gw.port, client_ssl, GET_X)
        assert second.startswith(b"HTTP/1.1 503 ")
        assert b"\r\nRetry-After: 1\r\n" in second
        up.release.set()
        assert (await first).startswith(b"HTTP/1.1 200 ")


# -- 3. Trailers count against the head limits ------------------------------------------------


CHUNKED_POST = b"POST /raw/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "whole", [False, True], ids=["never-ended-over-many-reads", "whole-in-one-write"]
)
async def test_oversized_chunked_trailers_get_431_and_never_complete_upstream(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, whole: bool
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        if whole:  # 40,000 bytes of trailer in one write, ended: the limit is 32 KiB
            writer.write(CHUNKED_POST + b"3\r\nabc\r\n0\r\nX-T: " + b"a" * 40_000 + b"\r\n\r\n")
        else:
            writer.write(CHUNKED_POST + b"3\r\nabc\r\n0\r\nX-Trailer: ")

        async def flood() -> None:  # 64 KiB of one trailer, never ended
            for _ in range(0 if whole else 16):
                writer.write(b"a" * 4096)
                await writer.drain()
            await asyncio.sleep(30)

        answer = await _read_while(reader, flood())
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert up.requests() == []


# -- 4. Exactly one upstream response per request ----------------------------------------------

EXTRA = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nPOISON!"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + EXTRA,
        b"HTTP/1.1 204 No Content\r\n\r\n" + EXTRA,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 100 Continue\r\n\r\n",
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", EXTRA],
    ],
    ids=["same-segment", "after-204", "1xx-after", "next-segment"],
)
async def test_bytes_after_the_final_response_fail_it_with_502(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, answer: bytes | list[bytes]
) -> None:
    async with RawUpstream(fixed(answer)) as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, GET_X)
        assert b"POISON" not in got
        # The response either failed before anything was sent (502), or, where the extra bytes
        # came later than the whole answer, was sent alone; never a second one.
        assert got.count(b"HTTP/1.1 ") == 1
        if not isinstance(answer, list):
            assert got.startswith(b"HTTP/1.1 502 ")


async def test_bytes_beyond_a_streamed_length_never_reach_the_client(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    answer = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", b"456789" + EXTRA * 4]
    async with RawUpstream(fixed(answer)) as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(
            gw.port,
            client_ssl,
            b"GET /raw/x HTTP/1.1\r\nHost: t\r\n\r\n" + GET_X.replace(b"/x", b"/y"),
        )
        assert b"POISON" not in got
        assert got.count(b"HTTP/1.1 200 ") <= 1  # the cut answer, then the close


async def test_a_request_pipelined_behind_a_cut_answer_is_never_forwarded(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    """An answer the upstream cuts short aborts the client connection; what the client had
    pipelined behind it must not go upstream (even on a pooled connection, at once), for its
    answer could never be delivered."""

    def answer(head: bytes) -> bytes:
        if head.startswith(b"GET /x "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async with RawUpstream(answer) as up:
        up.close_after = lambda head: head.startswith(b"GET /x ")
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b"GET /raw/w HTTP/1.1\r\nHost: t\r\n\r\n")  # leaves a pooled connection
        assert (await _response(reader))[0] == 200
        writer.write(
            b"GET /raw/x HTTP/1.1\r\nHost: t\r\n\r\nGET /raw/y HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            rest = await asyncio.wait_for(reader.read(), 10)
            assert rest.count(b"HTTP/1.1 ") == 1  # the cut answer, then the abort
        writer.close()
        await asyncio.sleep(0.2)  # a request started by mistake would reach the upstream now
        targets = [r.target for seen in up.connections for r, _ in seen.requests()]
        assert targets == [b"/w", b"/x"]


# -- 7. An upload that moves is never an upstream timeout --------------------------------------


async def test_a_slow_moving_upload_outlasts_the_read_timeout(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up, svc={"read_timeout_seconds": 0.5})
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(b"POST /raw/up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(10):  # 1.5 s in all, three read timeouts
            writer.write(b"x" * 100)
            await writer.drain()
            await asyncio.sleep(0.15)
        status, _, body = await _response(reader)
        writer.close()
        assert (status, body) == (200, b"ok")
        assert [len(b) for _, b in up.requests()] == [1000]


# -- 8. Nothing goes upstream before the whole head parsed -------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"POST /raw/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\tchunked\t\r\n\r\n0\r\n\r\n",
        b"GET /raw/x HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n",
        b"GET /raw/x HTTP/1.1\r\n\r\n",
    ],
    ids=["xchunked", "tab-chunked", "two-hosts", "no-host"],
)
async def test_a_head_llhttp_or_rfc_9112_refuses_gets_400_and_never_reaches_upstream(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, head: bytes
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, head)
        assert got.startswith(b"HTTP/1.1 400 ")
        assert got.count(b"HTTP/1.1 ") == 1
        assert up.connections == []


async def test_a_refused_head_request_gets_its_400_without_a_body(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(
            gw.port, client_ssl, b"HEAD /raw/x HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n"
        )
        assert got.startswith(b"HTTP/1.1 400 ")
        assert got.endswith(b"\r\n\r\n")  # the head alone: HEAD answers carry no body


async def test_http_1_0_without_host_is_served(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, b"GET /raw/x HTTP/1.0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 ")


async def test_a_chunk_framing_error_after_the_head_left_aborts_the_upstream_request(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    async with RawUpstream() as up:
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(
            b"POST /raw/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await up.connected.wait()
        seen = up.connections[0]
        while b"abc" not in seen.data:  # noqa: ASYNC110 - polling what the upstream read
            await asyncio.sleep(0.01)
        writer.write(b"zz\r\n")
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert got.startswith(b"HTTP/1.1 400 ")
        await asyncio.wait_for(up.connections[0].ended.wait(), 10)
        assert up.requests() == []  # the backend never saw a whole request


# -- 9. No body, no length ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "method", "expected"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", b"GET", None),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", b"GET", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", b"HEAD", b"7"),
    ],
    ids=["204", "304", "head"],
)
async def test_answers_without_a_body_carry_no_body_and_only_a_heads_length(
    gateway: GatewayFactory,
    client_ssl: ssl.SSLContext,
    answer: bytes,
    method: bytes,
    expected: bytes | None,
) -> None:
    async with RawUpstream(fixed(answer)) as up:
        gw = await _raw_gateway(gateway, up)
        reader, writer = await _open(gw.port, client_ssl)
        writer.write(method + b" /raw/x HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lengths = [
            line.split(b":", 1)[1].strip()
            for line in head.lower().split(b"\r\n")
            if line.startswith((b"content-length:", b"transfer-encoding:"))
        ]
        assert lengths == ([] if expected is None else [expected])
        writer.write(b"GET /raw/next HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing stray before it
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).startswith(b"HTTP/1.1 ")
        writer.close()


# -- Upstream heads are bounded -------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 300 + b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 5000,
    ],
    ids=["bytes", "count", "interim-flood"],
)
async def test_an_oversized_upstream_head_is_a_502(
    gateway: GatewayFactory, client_ssl: ssl.SSLContext, answer: bytes
) -> None:
    async with RawUpstream(fixed(answer)) as up:
        gw = await _raw_gateway(gateway, up)
        got = await _exchange(gw.port, client_ssl, GET_X)
        assert got.startswith(b"HTTP/1.1 502 ")
