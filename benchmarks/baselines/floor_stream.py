"""The floor of a TLS stream: the least a TLS-terminating TCP relay costs in this stack.

uvloop, TLS on the client leg, one plain TCP upstream connection per client connection, bytes
passed as they come (data_received straight to the other side's write), each side stops
reading while the other's write buffer is above its high mark, EOF passed on with write_eof,
and nothing else: no SNI routing, timeouts, limits, logs or metrics. An edgeauth stream does
the same work plus its features, so edgeauth/floor is what those features cost.

`python -m benchmarks.baselines.floor_stream --port P --upstream tcp://127.0.0.1:B
--cert C --key K`
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from urllib.parse import urlsplit

import uvloop


class Leg(asyncio.Protocol):
    """One side of a relayed connection; `peer` is the other side once it is connected."""

    transport: asyncio.Transport

    def __init__(self, peer: Leg | None = None) -> None:
        self.peer = peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        """Pass the EOF on; a plain leg stays open for the other way (a TLS one cannot)."""
        peer = self.peer
        if peer is None or peer.transport.is_closing() or not peer.transport.can_write_eof():
            return False
        peer.transport.write_eof()
        return self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()


class Client(Leg):
    """The TLS client leg: reading waits until the upstream connection is there."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__()
        self._address = address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(lambda: Leg(self), *self._address)
        loop.create_task(connect).add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, Leg]]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.transport.close()
            return
        upstream = task.result()[1]
        if self.transport.is_closing():
            upstream.transport.close()
            return
        self.peer = upstream
        self.transport.resume_reading()


async def serve(port: int, upstream: str, context: ssl.SSLContext) -> None:
    url = urlsplit(upstream)
    address = (url.hostname or "127.0.0.1", int(url.port or 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(address), "127.0.0.1", port, ssl=context, backlog=4096
    )
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the floor: a minimal TLS-terminating relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    uvloop.run(serve(args.port, args.upstream, context))


if __name__ == "__main__":
    main()
