"""One keep-alive HTTP/1.1 connection to a service: the lean upstream leg.

The aiohttp client cost three times the server leg per proxied request (perf-notes), so the
upstream leg is a plain asyncio.Protocol with llhttp (httptools) as its parser.

Rule 1: a request head is built as bytes once and written in one call; an upload streams in
the chunks it arrives in, with backpressure from the service's socket.
Rule 2: the response body is handed over in the chunks llhttp yields, one per read() and never
joined; reading from the service pauses while more than HIGH_WATER bytes wait for the client
and resumes once LOW_WATER or fewer do, so a connection holds at most HIGH_WATER plus one
socket read of body, however slow its client.
Rule 3: a connection is reusable only after a complete response whose framing allows it, with
its upload finished and its reading not paused; anything else closes it, so a half-read answer
never reaches the pool.
Rule 4: the read timeout counts from the last byte received once the request has been sent,
or while the service does not take the upload: a slow but moving body is fine, a silent
service is a TimeoutError. Time spent paused for a slow client, or waiting for the client's
upload, never counts.
Rule 5: one final response per request. Bytes after it (a second response, a 1xx, a body the
status forbids) fail the exchange and the connection; they never reach the client.
Rule 6: what the service sends without making progress (a head, trailers, interim answers)
is bounded by MAX_HEAD_BYTES and MAX_HEADERS.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from edgeauth.flowcontrol import FlowControl
from edgeauth.messages import NO_BODY_STATUSES

HIGH_WATER = 256 * 1024
LOW_WATER = HIGH_WATER // 2
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 200
_CHUNK_END = b"0\r\n\r\n"


class UpstreamClosed(ConnectionError):
    """The service closed or reset the connection before the response was complete."""


class BadResponse(UpstreamClosed):
    """The service broke HTTP/1.1: the connection cannot be trusted any further."""


class UpstreamConnection(asyncio.Protocol):
    """A pooled connection; between `start()` and `release()`/`close()` it is one response."""

    _flow: FlowControl  # backpressure both ways, from connection_made on
    # the state of one exchange, set by _reset()
    _error: BaseException | None
    _uploader: asyncio.Task[None] | None
    _buffered: int
    _head_only: bool
    _until_eof: bool
    _keep_alive: bool
    _done: bool
    _stalled: int
    _feeding: int
    _moved: bool
    status: int
    reason: str
    content_length: int | None
    _reason: bytes
    _raw_headers: list[tuple[bytes, bytes]]

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
        on_lost: Callable[[UpstreamConnection], None],
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._on_lost = on_lost
        self.holds_slot = False  # set by the pool once it counts this connection
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._chunks: deque[bytes] = deque()
        self._chunked = False
        self._reset(head_only=False)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        self._flow = FlowControl(stream)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        if self._parser is not None and not self._done:
            clean = exc is None and self._error is None
            if clean and self._until_eof and self._head is not None and self._head.done():
                self._done = True  # a body framed by the connection's end is now whole
            else:
                self._fail(UpstreamClosed(str(exc) if exc else "connection closed"))
        self._flow.connection_lost(UpstreamClosed("connection closed during the upload"))
        self._wake()
        self._stop_timer()
        self._on_lost(self)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            self.close()  # nothing was asked: a confused service is not reused
            return
        if self._done:
            self._poison(BadResponse("bytes after the final response"))
            return
        self._last_read = self._loop.time()
        self._moved = False
        self._feeding = len(data)
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, BadResponse) else exc
            self._poison(BadResponse(f"bad response: {cause!r}"))  # 101 included: not relayed
            return
        if self._moved:
            self._stalled = 0
        elif not self._done:
            self._stalled += len(data)
            if self._stalled > MAX_HEAD_BYTES:
                self._poison(BadResponse("response head or trailers too large"))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()
        self._last_read = self._loop.time()  # the service took some of the upload

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.status:
            raise BadResponse("bytes after the final response")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        if len(self._raw_headers) > MAX_HEADERS:
            raise BadResponse("too many response headers")

    def on_headers_complete(self) -> None:
        assert self._parser is not None  # noqa: S101 - only called while parsing
        status = self._parser.get_status_code()
        if status < 200:
            self._reason = b""  # an interim answer (100 Continue): wait for the real one
            self._raw_headers = []
            return
        self._moved = True
        self.status = status
        self.reason = self._reason.decode("latin-1")
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once complete
        no_body = self._head_only or status in NO_BODY_STATUSES
        framed = False
        for name, value in self._raw_headers:
            lname = name.lower()
            if lname == b"content-length":
                self.content_length = int(value)  # llhttp has checked it is one number
                framed = True
            elif lname == b"transfer-encoding":
                framed = value.rstrip().lower().endswith(b"chunked")  # else: until the end
        if self._head_too_large():
            raise BadResponse("response head too large")
        self._until_eof = not no_body and not framed
        if no_body:
            self._done = True  # llhttp would wait for a HEAD's declared body: it never comes
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def _head_too_large(self) -> bool:
        """Only a head that came in large reads can be: it is counted only then."""
        if self._stalled + self._feeding <= MAX_HEAD_BYTES:
            return False
        return sum(len(n) + len(v) for n, v in self._raw_headers) > MAX_HEAD_BYTES

    def on_chunk_header(self) -> None:
        self._moved = True

    def on_chunk_complete(self) -> None:
        self._moved = True

    def on_body(self, body: bytes) -> None:
        if self._done:
            raise BadResponse("a body the response may not have")  # after HEAD, 204, 304
        self._moved = True
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER:
            self._flow.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an interim answer
        self._done = True
        self._wake()

    # -- one exchange ---------------------------------------------------------------------

    def start(
        self, head: bytes, body: AsyncIterator[bytes] | None, *, chunked: bool, head_only: bool
    ) -> None:
        """Send a request head, and its body in the background (chunk-framed if `chunked`)."""
        transport = self.transport
        if transport is None:
            raise UpstreamClosed("connection closed")
        self._reset(head_only)
        self._chunked = chunked
        self._parser = httptools.HttpResponseParser(self)
        self._head = self._loop.create_future()
        self._last_read = self._loop.time()
        if self._timer is None:  # else the running one re-arms itself from _last_read
            self._timer = self._loop.call_at(
                self._last_read + self._read_timeout, self._check_timeout
            )
        transport.write(head)
        if body is not None:
            self._uploader = self._loop.create_task(self._upload(body))

    async def response(self) -> None:
        """Wait for the response head (status, reason, headers)."""
        assert self._head is not None  # noqa: S101 - start() was called
        try:
            await self._head
        except asyncio.CancelledError:
            self.close()
            raise

    def headers(self) -> list[tuple[str, str]]:
        return [
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
            for name, value in self._raw_headers
        ]

    async def read(self) -> bytes:
        """The next body chunk, as llhttp yielded it from one socket read; b"" at the end;
        raises if the body was cut. Not a join of all that waits: that copied every byte once
        more and held two copies of it at a time, for no fewer TLS records."""
        while True:
            if self._error is not None:
                raise self._error
            if self._chunks:
                break
            if self._done:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= LOW_WATER and self._flow.resume_reading():
            self._last_read = self._loop.time()
        return chunk

    def whole_body(self) -> bytes | None:
        """The body if it has fully arrived and has bytes to send; None means stream it.
        Raises if the exchange has failed (as after bytes beyond the response)."""
        if self._error is not None:
            raise self._error
        if not self._done or not self._chunks:
            return None
        return self._take()

    @property
    def reusable(self) -> bool:
        """Whether the exchange ended so that the next request can use this connection.
        Not while reading is paused (a whole body taken by whole_body() can leave it so): what
        the service sent since would go unseen, and the next answer would never be read."""
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and self._done
            and not self._chunks
            and not self._flow.read_paused
            and self._keep_alive
            and (self._uploader is None or self._uploader.done())
            and self._error is None
        )

    def finish(self) -> None:
        """End the exchange: the connection is idle from now on (the caller pools it). The
        read timer is left to lapse: the next exchange reuses it rather than make another."""
        self._parser = None
        self.idle_since = self._loop.time()

    def close(self) -> None:
        self._stop_timer()
        if self._uploader is not None and not self._uploader.done():
            self._uploader.cancel()
        if self.transport is not None:
            self.transport.abort()

    # -- internals ------------------------------------------------------------------------

    def _take(self) -> bytes:
        """Everything buffered, as one bytes object (no copy when it is one chunk): a whole
        body, sent with its head in one write."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return data

    def _reset(self, head_only: bool) -> None:
        """The per-exchange state, fresh for each request."""
        self._error = None
        self._uploader = None
        self._chunks.clear()
        self._buffered = 0
        self._head_only = head_only
        self._until_eof = False
        self._keep_alive = False
        self._done = False
        self._stalled = self._feeding = 0
        self._moved = False
        self.status = 0
        self.reason = ""
        self.content_length = None
        self._reason = b""
        self._raw_headers = []

    async def _upload(self, body: AsyncIterator[bytes]) -> None:
        """Stream the request body; any failure (too large, client gone) ends the connection."""
        try:
            async for chunk in body:
                if chunk:
                    self._write(chunk)
                    if self._flow.write_paused:
                        self._last_read = self._loop.time()  # waiting on the service now
                        await self._flow.drain()
            self._write(b"")
            self._last_read = self._loop.time()  # sent: from now on the service is late
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # reported through the response
            self._fail(exc)
            self.close()

    def _write(self, chunk: bytes) -> None:
        """Write one body chunk in the request's framing; b"" ends a chunked body."""
        if self.transport is None:
            raise UpstreamClosed("connection closed during the upload")
        if self._chunked:
            self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else _CHUNK_END)
        elif chunk:
            self.transport.write(chunk)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _poison(self, exc: BadResponse) -> None:
        """The service broke HTTP/1.1: the exchange fails even if a response had completed,
        and whatever it sent is dropped."""
        self._error = exc
        self._chunks.clear()
        self._buffered = 0
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()
        self._wake()
        self.close()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and not self._done:
            self._error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved here: the caller may have gone already
        self._wake()

    def _check_timeout(self) -> None:
        self._timer = None
        if self._parser is None or self._done:
            return
        now = self._loop.time()
        due = self._last_read + self._read_timeout
        uploading = self._uploader is not None and not self._uploader.done()
        if self._flow.read_paused or (uploading and not self._flow.draining):
            # waiting for our client (to read the answer, or to send the upload), not for
            # the service
            self._timer = self._loop.call_at(now + self._read_timeout, self._check_timeout)
            return
        if now < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        self._fail(TimeoutError("upstream read timeout"))
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
