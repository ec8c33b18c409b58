"""A backend that costs nearly nothing, for the throughput and stream scenarios.

The Python sample backend (aiohttp) on the generator's core capped every throughput run near
its own speed (perf-notes), and in the stream scenario it shared that core with the client and
was the bottleneck of every target: the backend must never be the bottleneck. This one answers
every request, whatever its method or path, with the same JSON body as the sample backend's
`/api/events`, pre-built once, except two paths the stream scenario uses, under any prefix:
`GET .../bytes/N` sends N zero bytes from one pre-built block, paced by the transport's flow
control (memory stays flat), and `POST|PUT .../sink` counts the body and answers
`{"received": N}`. llhttp (httptools) parses, uvloop runs it, keep-alive. nginx serving the JSON
body (`nginx.write_static_config`) is preferred for the throughput scenarios when installed.

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


BLOCK = memoryview(bytes(1 << 20))  # the download's bytes, written a slice at a time


def _head(length: int, content_type: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        content_type,
        length,
    )


def _download_size(url: bytes) -> int | None:
    """N for a `.../bytes/N` path, else None."""
    _, sep, tail = url.partition(b"?")[0].rpartition(b"/bytes/")
    return int(tail) if sep and tail.isdigit() else None


class Static(asyncio.Protocol):
    """One connection: every complete request gets its answer, in order."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._received = 0  # body bytes of the current request
        self._left = 0  # download bytes still to write
        self._paused = False
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._received += len(body)

    def on_message_complete(self) -> None:
        url, self._url = self._url, b""
        received, self._received = self._received, 0
        self._close_after = not self._parser.should_keep_alive()
        size = _download_size(url)
        if url.partition(b"?")[0].endswith(b"/sink"):
            answer = orjson.dumps({"received": received})
            self.transport.write(_head(len(answer), b"application/json") + answer)
        elif size is not None:
            self.transport.write(_head(size, b"application/octet-stream"))
            self._left = size
            self._pump()
            return
        else:
            self.transport.write(RESPONSE)
        self._finish()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._left:
            self._pump()

    def _pump(self) -> None:
        """Write download bytes until the transport's buffer passes its high-water mark."""
        while self._left and not self._paused:
            piece = min(self._left, len(BLOCK))
            self._left -= piece
            self.transport.write(BLOCK[:piece])
        if not self._left:
            self._finish()

    def _finish(self) -> None:
        if self._close_after:
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
