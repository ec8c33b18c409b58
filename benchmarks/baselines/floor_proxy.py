"""The floor: the least a TLS proxy with a bearer check costs in this stack.

uvloop, TLS on the client leg, llhttp (httptools) on both legs, a dict lookup of the bearer
token (401 otherwise), one plain-HTTP upstream connection per client connection, and nothing
else: no timeouts, limits, logs, metrics, HEAD or 1xx handling, nor header rewriting beyond
the hop-by-hop ones. edgeauth does the same work plus its features, so edgeauth/floor is what
those features cost. Bodies pass as they come: a request needs a Content-Length (a chunked one
gets 411), a response without one is re-chunked. Each leg stops reading while the other
cannot take more. Requests are answered in order: a local answer (401) waits behind the
upstream answers still due on that connection.

`python -m benchmarks.baselines.floor_proxy --port P --upstream http://127.0.0.1:B
--tokens FILE --cert C --key K`
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import uvloop

HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade"))


def _answer(status: bytes, message: bytes, extra: bytes = b"") -> bytes:
    body = b'{"message":"%s"}' % message
    head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
    return head % (status, len(body), extra) + body


UNAUTHORIZED = _answer(b"401 Unauthorized", b"Unauthorized", b"WWW-Authenticate: Bearer\r\n")
LENGTH_REQUIRED = _answer(b"411 Length Required", b"Length Required", b"Connection: close\r\n")
BAD_REQUEST = _answer(b"400 Bad Request", b"Bad Request", b"Connection: close\r\n")


class Client(asyncio.Protocol):
    """One TLS client connection and its own upstream connection."""

    transport: asyncio.Transport

    def __init__(self, tokens: dict[bytes, str], address: tuple[str, int]) -> None:
        self._tokens = tokens
        self._address = address
        self._parser = httptools.HttpRequestParser(self)
        self._upstream: Upstream | None = None
        self._due: deque[bytes | None] = deque()  # per request: None = upstream's, else ours
        self._closing = False
        self._url = b""
        self._head: list[bytes] = []
        self._token = b""
        self._refusal: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.pause_reading()  # until the upstream connection is there
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(lambda: Upstream(self), *self._address)
        loop.create_task(connect).add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, Upstream]]) -> None:
        if task.cancelled() or task.exception() is not None or self.transport.is_closing():
            self.transport.close()
            if not task.cancelled() and task.exception() is None:
                task.result()[0].close()
            return
        self._upstream = task.result()[1]
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None:
            self._upstream.transport.close()

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._close_after(BAD_REQUEST)

    def on_message_begin(self) -> None:
        self._url = b""
        self._head = []
        self._token = b""
        self._refusal = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"authorization":
            self._token = value[7:] if value[:7].lower() == b"bearer " else b""
        elif lower == b"transfer-encoding":
            self._refusal = LENGTH_REQUIRED
        elif lower not in HOP:
            self._head += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        if self._refusal is None and self._token not in self._tokens:
            self._refusal = UNAUTHORIZED
        if self._refusal is None and self._upstream is not None:
            self._due.append(None)
            method = self._parser.get_method()
            line = b"%s %s HTTP/1.1\r\n" % (method, self._url)
            self._upstream.transport.write(b"".join((line, *self._head, b"\r\n")))

    def on_body(self, body: bytes) -> None:
        if self._refusal is None and self._upstream is not None:
            self._upstream.transport.write(body)

    def on_message_complete(self) -> None:
        if self._refusal is LENGTH_REQUIRED or not self._parser.should_keep_alive():
            self._close_after(self._refusal)
        elif self._refusal is not None:
            self._send_or_queue(self._refusal)

    def _close_after(self, answer: bytes | None) -> None:
        self._closing = True
        self.transport.pause_reading()
        if answer is not None:
            self._send_or_queue(answer)
        self._close_if_done()

    def _send_or_queue(self, answer: bytes) -> None:
        if self._due:
            self._due.append(answer)
        else:
            self.transport.write(answer)

    def _close_if_done(self) -> None:
        if self._closing and not self._due:
            self.transport.close()

    def response_done(self) -> None:
        """The upstream's answer at the head of the line is complete: ours behind it go."""
        self._due.popleft()
        while self._due and self._due[0] is not None:
            self.transport.write(self._due.popleft() or b"")
        self._close_if_done()


class Upstream(asyncio.Protocol):
    """The client's plain-HTTP connection to the backend; answers are relayed as they come."""

    transport: asyncio.Transport

    def __init__(self, client: Client) -> None:
        self._client = client
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._head: list[bytes] = []
        self._chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.transport.close()

    def pause_writing(self) -> None:
        self._client.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self._client.transport.is_closing():
            self._client.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self._head = []
        self._chunked = True

    def on_status(self, status: bytes) -> None:
        self._reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self._chunked = False
        if lower not in HOP and lower != b"transfer-encoding":
            self._head += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._chunked = self._chunked and status >= 200 and status not in (204, 304)
        line = b"HTTP/1.1 %d %s\r\n" % (status, self._reason)
        chunked = b"Transfer-Encoding: chunked\r\n" if self._chunked else b""
        self._client.transport.write(b"".join((line, *self._head, chunked, b"\r\n")))

    def on_body(self, body: bytes) -> None:
        self._client.transport.write(b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body)

    def on_message_complete(self) -> None:
        if self._chunked:
            self._client.transport.write(b"0\r\n\r\n")
        self._client.response_done()


async def serve(
    port: int, tokens: dict[bytes, str], upstream: str, context: ssl.SSLContext
) -> None:
    url = urlsplit(upstream)
    address = (url.hostname or "127.0.0.1", url.port or 80)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(tokens, address), "127.0.0.1", port, ssl=context, backlog=4096
    )
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the floor: a minimal TLS proxy with a token")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    tokens = {t.encode(): "bench" for t in args.tokens.read_text().split()}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    uvloop.run(serve(args.port, tokens, args.upstream, context))


if __name__ == "__main__":
    main()
