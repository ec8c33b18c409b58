"""Stream routes over real sockets, in one worker: TLS termination, SNI routing, passthrough,
mutual TLS, half-close, idle timeout, upstream down, PROXY headers, connection limits.

Each test asserts what reaches the upstream and the client, and the connection's log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import Any

import pytest
from prometheus_client import REGISTRY

from edgeauth.stream import clienthello
from tests.conftest import free_port_refused
from tests.stream.conftest import Certs, StreamGateway, Upstream, echo, read_all

Streams = Callable[..., Awaitable[StreamGateway]]
Upstreams = Callable[..., Awaitable[Upstream]]


async def tls_echo(port: int, ctx: ssl.SSLContext, name: str, data: bytes) -> bytes:
    """Send `data` over TLS with SNI `name`, end our side, and read the answer to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)
    writer.write(data)
    await writer.drain()
    answer = await reader.readexactly(len(data))
    writer.close()
    return answer


async def test_tls_is_terminated_and_bytes_relayed_both_ways(
    streams: Streams, upstream: Upstreams, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await upstream(echo)
    cert, key = certs.a
    gw = await streams(
        [
            {
                "name": "iris",
                "upstream": backend.url,
                "tls_cert_file": str(cert),
                "tls_key_file": str(key),
            }
        ]
    )
    before = REGISTRY.get_sample_value("edgeauth_stream_connections_total", {"stream": "iris"}) or 0
    payload = bytes(range(256)) * 1000
    assert await tls_echo(gw.port, certs.client(), "a.example", payload) == payload
    (line,) = await gw.log()
    assert line["stream"] == "iris"
    assert line["sni"] == "a.example"
    assert (line["bytes_in"], line["bytes_out"]) == (len(payload), len(payload))
    assert line["close_reason"] == "client_closed"
    assert line["peer"].startswith("127.0.0.1:")
    assert line["client_subject"] is None
    assert line["duration_ms"] > 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # close_notify too
    gw.gateway.streams.report()
    gw.gateway.metrics.flush()
    after = REGISTRY.get_sample_value("edgeauth_stream_connections_total", {"stream": "iris"})
    assert after == before + 1
    egress = {"stream": "iris", "direction": "egress"}
    assert (REGISTRY.get_sample_value("edgeauth_stream_bytes_total", egress) or 0) >= len(payload)


async def test_sni_chooses_between_two_streams_on_one_port(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    first, second = await upstream(echo), await upstream(echo)
    gw = await streams(
        [
            {
                "name": "a",
                "upstream": first.url,
                "server_names": ["a.example"],
                "tls_cert_file": str(certs.a[0]),
                "tls_key_file": str(certs.a[1]),
            },
            {
                "name": "b",
                "upstream": second.url,
                "server_names": ["*.example"],
                "tls_cert_file": str(certs.b[0]),
                "tls_key_file": str(certs.b[1]),
            },
        ]
    )
    assert len(gw.ports) == 1
    # each stream answers with its own certificate: the client checks the name in it
    assert await tls_echo(gw.port, certs.client(), "a.example", b"to a") == b"to a"
    assert await tls_echo(gw.port, certs.client(), "b.example", b"to b") == b"to b"
    assert (first.connections, second.connections) == (1, 1)
    await refused_handshake(gw.port, certs.client(), "c.other")
    lines = await gw.log(3)
    assert [line["stream"] for line in lines[:2]] == ["a", "b"]
    assert lines[2]["close_reason"] == "no_route"
    assert lines[2]["sni"] == "c.other"
    assert (first.connections, second.connections) == (1, 1)


async def refused_handshake(port: int, ctx: ssl.SSLContext, name: str) -> None:
    """A TLS client the gateway closes before or during its handshake."""
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)


def server_context(pair: tuple[object, object]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pair)  # type: ignore[arg-type]
    return ctx


async def test_passthrough_relays_the_tls_untouched_to_the_upstream(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """The client's handshake is with the upstream: the gateway holds no certificate."""
    backend = await upstream(echo, server_context(certs.a))
    gw = await streams(
        [
            {
                "name": "pass",
                "upstream": backend.url,
                "passthrough": True,
                "server_names": ["a.example"],
            }
        ]
    )
    assert await tls_echo(gw.port, certs.client(), "a.example", b"through") == b"through"
    (line,) = await gw.log()
    assert (line["stream"], line["sni"], line["client_subject"]) == ("pass", "a.example", None)
    assert line["bytes_in"] > len(b"through")  # the TLS records, ClientHello included


@pytest.mark.parametrize(
    ("keys", "relayed"),
    [({"ca_file": True}, True), ({}, False), ({"tls_verify": False}, True)],
)
async def test_a_tls_upstream_is_verified_against_ca_file(
    streams: Streams, upstream: Upstreams, certs: Certs, keys: dict[str, object], relayed: bool
) -> None:
    backend = await upstream(echo, server_context(certs.upstream))
    if keys.get("ca_file"):
        keys = {"ca_file": str(certs.servers.ca_file)}
    url = f"tls://127.0.0.1:{backend.port}"
    gw = await streams([{"name": "tls-up", "tls": False, "upstream": url, **keys}])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"over tls")
    if relayed:
        assert await reader.readexactly(8) == b"over tls"
    else:
        assert await read_all(reader) == b""  # closed at once
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == ("client_closed" if relayed else "upstream_tls_error")


def mtls(certs: Certs, name: str, upstream_url: str, **keys: object) -> dict[str, object]:
    return {
        "name": name,
        "upstream": upstream_url,
        "tls_cert_file": str(certs.a[0]),
        "tls_key_file": str(certs.a[1]),
        "client_ca_file": str(certs.clients.ca_file),
        **keys,
    }


async def test_mtls_accepts_an_allowed_client_certificate(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    backend = await upstream(echo)
    gw = await streams([mtls(certs, "studio", backend.url, allowed_subjects=["CN=studio,O=Acme"])])
    ctx = certs.client(cert=certs.studio)
    assert await tls_echo(gw.port, ctx, "a.example", b"mutual") == b"mutual"
    (line,) = await gw.log()
    assert line["client_subject"] == "CN=studio,O=Acme"
    assert line["close_reason"] == "client_closed"


@pytest.mark.parametrize(
    ("client", "allowed", "reason"),
    [
        (None, {}, "no_client_certificate"),
        ("stranger", {}, "client_certificate_refused"),
        ("other", {"allowed_subjects": ["CN=studio,O=Acme"]}, "subject_not_allowed"),
        ("other", {"allowed_sans": ["DNS:studio.example"]}, "subject_not_allowed"),
    ],
)
async def test_mtls_refuses_before_the_upstream_is_connected(
    streams: Streams,
    upstream: Upstreams,
    certs: Certs,
    client: str | None,
    allowed: dict[str, object],
    reason: str,
) -> None:
    """No certificate, one from another CA, or one not allowed: the connection ends without
    a byte reaching the upstream (with TLS 1.3 the client learns it on its first read)."""
    backend = await upstream(echo)
    gw = await streams([mtls(certs, "studio", backend.url, **allowed)])
    before = REGISTRY.get_sample_value(
        "edgeauth_stream_handshake_failures_total", {"stream": "studio", "reason": reason}
    )
    ctx = certs.client(cert=None if client is None else getattr(certs, client))
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=ctx, server_hostname="a.example"
        )
    except (ConnectionError, ssl.SSLError):
        pass
    else:
        writer.write(b"let me in")
        assert await read_all(reader) == b""
        writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == reason
    assert backend.connections == 0
    gw.gateway.metrics.flush()
    after = REGISTRY.get_sample_value(
        "edgeauth_stream_handshake_failures_total", {"stream": "studio", "reason": reason}
    )
    assert after == (before or 0) + 1


def resumed_echo(
    port: int, ctx: ssl.SSLContext, name: str, session: ssl.SSLSession | None
) -> tuple[bool, ssl.SSLSession | None, bytes]:
    """One TLS connection offering `session`: (resumed?, the session to offer next time, what
    came back for a ping; b"" when the gateway closed the connection instead)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=name, session=session) as sock:
                sock.sendall(b"ping")
                answer = sock.recv(4)
                return bool(sock.session_reused), sock.session, answer
        except (ConnectionError, ssl.SSLError):
            return False, None, b""


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_session_of_one_stream_does_not_resume_on_an_mtls_stream(
    streams: Streams, upstream: Upstreams, certs: Certs, version: ssl.TLSVersion
) -> None:
    """Two streams on one listener, the second with mutual TLS: a session (ticket) the first
    gave a client without a certificate resumes on the first, never on the second, where a
    resumed session would skip the certificate the handshake requires. Each stream's own
    SSLContext keeps its own session cache and ticket keys."""
    open_backend, mtls_backend = await upstream(echo), await upstream(echo)
    gw = await streams(
        [
            {
                "name": "open",
                "upstream": open_backend.url,
                "server_names": ["a.example"],
                "tls_cert_file": str(certs.a[0]),
                "tls_key_file": str(certs.a[1]),
            },
            mtls(certs, "studio", mtls_backend.url, server_names=["b.example"]),
        ]
    )
    ctx = certs.client()
    ctx.check_hostname = False  # the mTLS stream answers with a.example's certificate
    ctx.minimum_version = ctx.maximum_version = version
    _, session, answer = await asyncio.to_thread(resumed_echo, gw.port, ctx, "a.example", None)
    assert answer == b"ping"
    assert session is not None
    resumed, _, answer = await asyncio.to_thread(resumed_echo, gw.port, ctx, "a.example", session)
    assert (resumed, answer) == (True, b"ping")  # sessions do resume, on their own stream
    resumed, _, answer = await asyncio.to_thread(resumed_echo, gw.port, ctx, "b.example", session)
    assert (resumed, answer) == (False, b"")
    lines = await gw.log(3)
    assert [(line["stream"], line["close_reason"]) for line in lines] == [
        ("open", "client_closed"),
        ("open", "client_closed"),
        ("studio", "no_client_certificate"),
    ]
    assert (open_backend.connections, mtls_backend.connections) == (2, 0)


async def test_the_san_of_an_allowed_client_is_enough(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    backend = await upstream(echo)
    gw = await streams([mtls(certs, "studio", backend.url, allowed_sans=["DNS:studio.example"])])
    ctx = certs.client(cert=certs.studio)
    assert await tls_echo(gw.port, ctx, "a.example", b"by san") == b"by san"


async def test_plain_bytes_on_a_tls_stream_are_closed(
    streams: Streams, upstream: Upstreams
) -> None:
    backend = await upstream(echo)
    gw = await streams([{"name": "iris", "upstream": backend.url}])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await read_all(reader) == b""
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "not_tls"
    assert "error" in line
    assert backend.connections == 0


async def test_client_eof_reaches_the_upstream_and_its_answer_still_comes_back(
    streams: Streams, upstream: Upstreams
) -> None:
    """Half-close client → upstream: the upstream reads to EOF, then answers."""

    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # to EOF
        writer.write(b"got " + request)
        await writer.drain()
        writer.close()

    backend = await upstream(answer_after_eof)
    gw = await streams([{"name": "plain", "tls": False, "upstream": backend.url}])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"question")
    writer.write_eof()
    assert await read_all(reader) == b"got question"
    writer.close()
    (line,) = await gw.log()
    assert (line["bytes_in"], line["bytes_out"], line["close_reason"]) == (8, 12, "client_closed")


async def test_a_client_eof_before_the_upstream_is_connected_is_passed_on_after_it(
    streams: Streams, upstream: Upstreams
) -> None:
    """A client that half-closes at once, having nothing to say, and reads what the upstream
    does: its EOF arrives while the upstream is being connected, and reaches the upstream
    once it is, rather than ending the connection before the upstream has spoken."""

    async def greet_then_answer_eof(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"hello")
        await writer.drain()
        request = await reader.read()  # to EOF
        writer.write(b", bye" + request)
        writer.close()

    backend = await upstream(greet_then_answer_eof)
    gw = await streams([{"name": "plain", "tls": False, "upstream": backend.url}])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write_eof()
    assert await read_all(reader) == b"hello, bye"
    writer.close()
    (line,) = await gw.log()
    assert (line["bytes_in"], line["bytes_out"], line["close_reason"]) == (0, 10, "client_closed")


async def test_upstream_eof_reaches_the_client_which_can_still_send(
    streams: Streams, upstream: Upstreams
) -> None:
    """Half-close upstream → client: the client reads EOF, then what it sends still arrives."""
    received = asyncio.get_running_loop().create_future()

    async def greet_then_listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()
        received.set_result(await reader.read())
        writer.close()

    backend = await upstream(greet_then_listen)
    gw = await streams([{"name": "plain", "tls": False, "upstream": backend.url}])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert await read_all(reader) == b"hello"  # EOF seen
    writer.write(b"late words")
    writer.write_eof()
    assert await asyncio.wait_for(received, 5) == b"late words"
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "upstream_closed"


async def test_an_idle_connection_is_closed(streams: Streams, upstream: Upstreams) -> None:
    backend = await upstream(echo)
    gw = await streams(
        [{"name": "plain", "tls": False, "upstream": backend.url, "idle_timeout_seconds": 0.3}]
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert await read_all(reader, within=5) == b""  # closed by the gateway, not by us
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "idle_timeout"
    # not before the timeout; the timer runs on uvloop's clock, which libuv keeps in whole
    # milliseconds and caches per loop turn, the duration on perf_counter (seen: 299.863)
    assert line["duration_ms"] >= 300 - 1


async def test_traffic_keeps_a_connection_from_idling_out(
    streams: Streams, upstream: Upstreams
) -> None:
    backend = await upstream(echo)
    gw = await streams(
        [{"name": "plain", "tls": False, "upstream": backend.url, "idle_timeout_seconds": 0.4}]
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    for _ in range(6):  # 0.9 s in all, never 0.4 s quiet
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        await asyncio.sleep(0.15)
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "client_closed"


async def test_upstream_down_closes_the_client_at_once(
    streams: Streams, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"tcp://127.0.0.1:{free_port_refused()}"
    gw = await streams(
        [
            {
                "name": "iris",
                "upstream": down,
                "tls_cert_file": str(certs.a[0]),
                "tls_key_file": str(certs.a[1]),
            }
        ]
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=certs.client(), server_hostname="a.example"
    )
    assert await read_all(reader, within=2) == b""
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "upstream_refused"
    assert "refused" in line["error"].lower()
    assert any(
        r.getMessage() == "stream upstream unreachable; client closed" for r in caplog.records
    )


def v2_header(client: tuple[str, int], gateway: tuple[str, int]) -> bytes:
    """The PROXY v2 header of a TCP over IPv4 connection, written out from the spec."""
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    addresses = socket.inet_aton(client[0]) + socket.inet_aton(gateway[0])
    return (
        signature
        + bytes([0x21, 0x11])
        + struct.pack("!H", 12)
        + addresses
        + struct.pack("!HH", client[1], gateway[1])
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_the_upstream_gets_a_proxy_header_first(
    streams: Streams, upstream: Upstreams, version: str
) -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.read())
        writer.close()

    backend = await upstream(record)
    gw = await streams(
        [{"name": "pp", "tls": False, "upstream": backend.url, "proxy_protocol": version}]
    )
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    client = writer.get_extra_info("sockname")
    writer.write(b"payload")
    writer.write_eof()
    received = await asyncio.wait_for(got, 5)
    writer.close()
    if version == "v1":
        header = f"PROXY TCP4 127.0.0.1 127.0.0.1 {client[1]} {gw.port}\r\n".encode()
    else:
        header = v2_header(client, ("127.0.0.1", gw.port))
    assert received == header + b"payload"


async def test_beyond_max_connections_a_connection_waits_in_the_backlog(
    streams: Streams, upstream: Upstreams
) -> None:
    backend = await upstream(echo)
    gw = await streams(
        [{"name": "one", "tls": False, "upstream": backend.url, "max_connections": 1}]
    )
    first_reader, first = await asyncio.open_connection("127.0.0.1", gw.port)
    first.write(b"1")
    assert await first_reader.readexactly(1) == b"1"
    second_reader, second = await asyncio.open_connection("127.0.0.1", gw.port)
    second.write(b"2")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(second_reader.readexactly(1), 0.5)
    assert backend.connections == 1
    gw.gateway.streams.report()
    gw.gateway.metrics.flush()
    assert REGISTRY.get_sample_value("edgeauth_stream_active", {"stream": "one"}) == 1
    first.close()
    assert await asyncio.wait_for(second_reader.readexactly(1), 5) == b"2"
    assert backend.connections == 2
    second.close()


async def test_a_silent_client_is_closed_after_the_handshake_timeout(
    streams: Streams, upstream: Upstreams
) -> None:
    backend = await upstream(echo)
    gw = await streams([{"name": "iris", "upstream": backend.url}], handshake_timeout_seconds=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert await read_all(reader, within=5) == b""  # says nothing, is closed
    writer.close()
    (line,) = await gw.log()
    assert line["close_reason"] == "timeout"
    assert line["stream"] == ""
    assert backend.connections == 0


async def test_a_hello_without_sni_goes_to_the_listeners_default(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    named, default = await upstream(echo), await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [
            {"name": "named", "upstream": named.url, "server_names": ["a.example"], **pair},
            {"name": "default", "upstream": default.url, **pair},
        ]
    )
    ctx = certs.client()
    ctx.check_hostname = False  # no name to check without SNI
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=ctx)
    writer.write(b"anyone")
    assert await reader.readexactly(6) == b"anyone"
    writer.close()
    (line,) = await gw.log()
    assert (line["stream"], line["sni"]) == ("default", None)
    assert (named.connections, default.connections) == (0, 1)


def client_hello(ctx: ssl.SSLContext, name: str) -> bytes:
    """The ClientHello a client with `ctx` sends to `name`, as bytes to send by hand."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls_object.do_handshake()
    return outgoing.read()


async def test_a_client_stalling_after_its_hello_is_closed_at_the_handshake_timeout(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """The whole ClientHello, then silence: the TLS layer gives up at the handshake timeout,
    and the log and the handshake-failure metric say "timeout", not "closed"."""
    backend = await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [{"name": "a", "upstream": backend.url, **pair}], handshake_timeout_seconds=0.3
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(client_hello(certs.client(), "a.example"))
    assert b"\x16\x03" in await read_all(reader)  # its ServerHello, then the close
    writer.close()
    (line,) = await gw.log()
    assert (line["stream"], line["close_reason"]) == ("a", "timeout")
    assert backend.connections == 0


async def test_a_trickled_hello_is_parsed_when_bytes_arrive_not_polled(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """Most of a ClientHello, a pause, a few bytes more, then nothing: the gateway parses
    what it has when bytes arrive (here twice), instead of peeking at and parsing the same
    prefix every few milliseconds until the handshake timeout, which many such clients would
    turn into a worker busy with nothing else."""
    backend = await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [{"name": "a", "upstream": backend.url, **pair}], handshake_timeout_seconds=0.6
    )
    parsed = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal parsed
        if event == "call" and frame.f_code is clienthello.server_name.__code__:
            parsed += 1

    hello = client_hello(certs.client(), "a.example")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    sys.setprofile(count)  # the gateway runs in this thread: its calls are counted
    try:
        writer.write(hello[:-10])
        await asyncio.sleep(0.3)
        writer.write(hello[-10:-5])
        assert await read_all(reader) == b""
    finally:
        sys.setprofile(None)
    writer.close()
    (line,) = await gw.log()
    assert (line["sni"], line["close_reason"]) == (None, "timeout")
    assert 1 <= parsed <= 3
    assert backend.connections == 0


def handshake_in_pieces(
    port: int,
    ctx: ssl.SSLContext,
    name: str,
    payload: bytes,
    cuts: Sequence[int] = (20,),
    pause: float = 0.1,
) -> bytes:
    """A TLS client whose ClientHello reaches the gateway in TCP segments cut at `cuts`,
    `pause` apart; then it sends `payload` and reads as many bytes back."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = True
        while True:
            try:
                tls_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                if first:
                    start = 0
                    for cut in (c for c in cuts if c < len(data)):
                        sock.sendall(data[start:cut])
                        time.sleep(pause)
                        start = cut
                    data, first = data[start:], False
                sock.sendall(data)
                incoming.write(sock.recv(65536))
        sock.sendall(outgoing.read())
        tls_object.write(payload)
        sock.sendall(outgoing.read())
        answer = b""
        while len(answer) < len(payload):
            try:
                answer += tls_object.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        return answer


async def test_a_client_hello_split_over_segments_is_waited_for(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    backend = await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [{"name": "a", "upstream": backend.url, "server_names": ["a.example"], **pair}]
    )
    answer = await asyncio.to_thread(
        handshake_in_pieces, gw.port, certs.client(), "a.example", b"in pieces"
    )
    assert answer == b"in pieces"
    (line,) = await gw.log()
    assert line["sni"] == "a.example"


async def test_a_client_hello_trickled_in_many_segments_is_parsed_once_it_is_whole(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """A ClientHello in some fifty segments: the gateway waits for the end of the record its
    header announces, so it parses a few times (the header's first bytes, then the whole
    record), not once per segment."""
    backend = await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [{"name": "a", "upstream": backend.url, "server_names": ["a.example"], **pair}]
    )
    parsed = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal parsed
        if event == "call" and frame.f_code is clienthello.server_name.__code__:
            parsed += 1

    sys.setprofile(count)  # the gateway runs in this thread: its calls are counted
    try:
        answer = await asyncio.to_thread(
            handshake_in_pieces,
            gw.port,
            certs.client(),
            "a.example",
            b"trickled",
            range(2, 400, 8),
            0.005,
        )
    finally:
        sys.setprofile(None)
    assert answer == b"trickled"
    assert 1 <= parsed <= 3
    (line,) = await gw.log()
    assert line["sni"] == "a.example"


async def test_a_sink_upstream_counts_every_byte_sent_through_tls(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """What the client writes before it closes all reaches the upstream, through the TLS
    termination and the flow control in between."""
    counted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while data := await reader.read(1 << 20):
            total += len(data)
        counted.set_result(total)
        writer.close()

    backend = await upstream(sink)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams([{"name": "sink", "upstream": backend.url, **pair}])
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=certs.client(), server_hostname="a.example"
    )
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(32):
        writer.write(block)
        await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert await asyncio.wait_for(counted, 10) == 32 * len(block)
    (line,) = await gw.log()
    assert (line["bytes_in"], line["bytes_out"]) == (32 * len(block), 0)


async def test_a_stop_closes_every_stream_listener_at_once(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    """A client silent in its handshake on one listener: a stop waits for it (up to the
    handshake timeout) only once every listener is closed, so no other listener of a stopping
    or retiring worker accepts a connection meanwhile, on the settings a reload replaced."""
    backend = await upstream(echo)
    pair = {"tls_cert_file": str(certs.a[0]), "tls_key_file": str(certs.a[1])}
    gw = await streams(
        [
            {"name": "tls", "listen": "127.0.0.1:0", "upstream": backend.url, **pair},
            {"name": "plain", "listen": "127.0.0.2:0", "tls": False, "upstream": backend.url},
        ],
        handshake_timeout_seconds=2,
    )
    _, silent = await asyncio.open_connection("127.0.0.1", gw.ports[0])
    await asyncio.sleep(0.05)  # accepted: its peek is waiting
    stopping = asyncio.ensure_future(gw.gateway.streams.stop_accepting())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waiting for the silent client's handshake
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.2", gw.ports[1])
    silent.close()
    await stopping
