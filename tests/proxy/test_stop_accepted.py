"""A stopping worker (drain on SIGTERM or a reload) never drops a client it has accepted: a
connection still in its TLS handshake finishes it, and one that has not sent its first request
yet gets that request answered (with Connection: close) before the worker lets go.

Real TCP and TLS against an in-process gateway; the TLS client is driven by hand (ssl.MemoryBIO)
so the test knows the gateway has accepted the connection and is mid-handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from tests.conftest import Backend, GatewayFactory, RunningGateway, service

GET = b"GET /tools/echo HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def _gateway(gateway: GatewayFactory, backend: Backend) -> RunningGateway:
    return await gateway([service("tools", backend.url, ["/tools"])])


async def _until(check: Callable[[], bool]) -> None:
    """Poll `check()` to a deadline: what it reads changes on the gateway's side."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 - polling the gateway's connection states
            await asyncio.sleep(0.01)


class HandDrivenTls:
    """A TLS client over a plain stream, one step at a time."""

    def __init__(
        self, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_hostname="localhost")
        self.reader, self.writer = reader, writer

    async def hello(self) -> None:
        """Send the ClientHello and read the server's first flight: proof it accepted us."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.writer.write(self._out.read())
        data = await asyncio.wait_for(self.reader.read(65536), 10)
        assert data, "the gateway closed a connection it had accepted"
        self._in.write(data)

    async def finish(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.writer.write(self._out.read())
                data = await asyncio.wait_for(self.reader.read(65536), 10)
                assert data, "the gateway closed the connection during its handshake"
                self._in.write(data)
        self.writer.write(self._out.read())

    async def exchange(self, request: bytes) -> bytes:
        """Send `request`, return everything until the gateway closes."""
        self.tls.write(request)
        self.writer.write(self._out.read())
        received = b""
        async with asyncio.timeout(10):
            while data := await self.reader.read(65536):
                self._in.write(data)
                try:
                    while chunk := self.tls.read(65536):
                        received += chunk
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
        return received


async def test_a_connection_mid_handshake_is_served_by_a_stopping_gateway(
    gateway: GatewayFactory, backend: Backend, client_ssl: ssl.SSLContext
) -> None:
    gw = await _gateway(gateway, backend)
    client = HandDrivenTls(client_ssl, *await asyncio.open_connection("127.0.0.1", gw.port))
    await client.hello()
    stop = asyncio.create_task(gw.gateway.stop(10.0))
    # the stop waits for the handshake it has started (bounded by the handshake timeout)
    done, _ = await asyncio.wait({stop}, timeout=0.5)
    assert not done, "the gateway stopped while a connection it accepted was mid-handshake"
    try:
        await client.finish()
        answer = await client.exchange(GET)
    finally:
        client.writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()
    await asyncio.wait_for(stop, 15)


async def test_a_fresh_connection_gets_its_first_request_answered_during_a_stop(
    gateway: GatewayFactory, backend: Backend, client_ssl: ssl.SSLContext
) -> None:
    gw = await _gateway(gateway, backend)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_ssl, server_hostname="localhost"
    )
    await _until(lambda: len(gw.gateway.connections()) == 1)
    stop = asyncio.create_task(gw.gateway.stop(10.0))
    await _until(lambda: all(c.closing for c in gw.gateway.connections()))
    writer.write(GET)
    async with asyncio.timeout(10):
        answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()
    await asyncio.wait_for(stop, 15)
    writer.close()


async def test_an_idle_kept_alive_connection_is_closed_at_once_by_a_stop(
    gateway: GatewayFactory, backend: Backend, client_ssl: ssl.SSLContext
) -> None:
    """Only fresh connections are waited for: one that was served and sits idle closes now."""
    gw = await _gateway(gateway, backend)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_ssl, server_hostname="localhost"
    )
    writer.write(GET)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
    )
    await reader.readexactly(length)
    await asyncio.wait_for(gw.gateway.stop(10.0), 15)
    async with asyncio.timeout(10):
        assert await reader.read() == b""
    writer.close()
