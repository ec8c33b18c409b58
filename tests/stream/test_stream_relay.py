"""Stream routes over real sockets, in one worker: TLS termination, SNI routing, passthrough,
mutual TLS, half-close, idle timeout, upstream down, PROXY headers, connection limits.

Each test asserts what reaches the upstream and the client, and the connection's log line.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from edgeauth import tls
from tests.conftest import free_port_refused
from tests.stream.conftest import Certs, StreamGateway, Upstream, echo, read_all

Streams = Callable[..., Awaitable[StreamGateway]]
Upstreams = Callable[..., Awaitable[Upstream]]


async def tls_echo(port: int, ctx: ssl.SSLContext, name: str, data: bytes) -> bytes:
    """Send `data` over TLS with SNI `name`, end our side, and read the answer to the end."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=name
    )
    writer.write(data)
    await writer.drain()
    answer = await reader.readexactly(len(data))
    writer.close()
    return answer


async def test_tls_is_terminated_and_bytes_relayed_both_ways(
    streams: Streams, upstream: Upstreams, certs: Certs
) -> None:
    backend = await upstream(echo)
    cert, key = certs.a
    gw = await streams(
        [{"name": "iris", "upstream": backend.url, "tls_cert_file": str(cert), "tls_key_file": str(key)}]
    )
    before = REGISTRY.get_sample_value("edgeauth_stream_connections_total", {"stream": "iris"}) or 0
    payload = bytes(range(256)) * 1000
    assert await tls_echo(gw.port, certs.client(), "a.example", payload) == payload
    (line,) = await gw.log()
    assert line["stream"] == "iris" and line["sni"] == "a.example"
    assert (line["bytes_in"], line["bytes_out"]) == (len(payload), len(payload))
    assert line["close_reason"] == "client_closed"
    assert line["peer"].startswith("127.0.0.1:") and line["client_subject"] is None
    assert line["duration_ms"] > 0
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
    assert lines[2]["close_reason"] == "no_route" and lines[2]["sni"] == "c.other"
    assert (first.connections, second.connections) == (1, 1)


async def refused_handshake(port: int, ctx: ssl.SSLContext, name: str) -> None:
    """A TLS client the gateway closes before or during its handshake."""
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)
