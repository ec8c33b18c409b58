"""A backend that costs nearly nothing, for the throughput scenarios when nginx is missing.

The Python sample backend (aiohttp) on the generator's core capped every throughput run near
its own speed (perf-notes): the backend must never be the bottleneck. This one answers every
request, whatever its method or path, with the same JSON body as the sample backend's
`/api/events`, pre-built once; llhttp (httptools) parses, uvloop runs it, keep-alive, request
bodies are read and dropped. nginx serving the same body (`nginx.write_static_config`) is
preferred when installed.

`python -m benchmarks.baselines.static_backend --port P`
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import orjson
import uvloop

from edgeauth.sample_backend import EVENTS

BODY = orjson.dumps(EVENTS)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Static(asyncio.Protocol):
    """One connection: every complete request gets RESPONSE, in order."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)
        if not self._parser.should_keep_alive():
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Static, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fixed-JSON HTTP backend for benchmarks")
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args(argv).port))


if __name__ == "__main__":
    main()
