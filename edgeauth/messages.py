"""Downstream HTTP/1.1 messages: the request a handler reads and the responses it returns.

The proxy listener's connections are edgeauth's own protocol (protocol.py), so these are
small slotted objects rather than aiohttp's request and response machinery, which cost more
per proxied request than the rest of the gateway put together (see the README's Benchmarks).
Rule 1: a handler returns a Response (whole body, written in one go) or a StreamResponse it
has already prepared, written and ended.
Rule 2: a header block is encoded once, and a value that would split a line is refused.
Rule 3: the framing headers a response leaves with (Content-Length, Transfer-Encoding) are
computed here, never copied: none on 1xx, 204 and 304; a HEAD answer keeps its length only.
Rule 4: a handler never holds the connection: it reads `request.peer`, facts taken once when
the connection was made, and may only cut it (`request.abort()`). The connection is reached
through `Connection`, the little of protocol.py's GatewayProtocol these objects need.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

from multidict import CIMultiDict

HeaderList = list[tuple[str, str]]
NO_BODY_STATUSES = frozenset({204, 304})


def has_body(status: int) -> bool:
    """Whether a response with this status can carry a body (RFC 9112 §6.3)."""
    return status >= 200 and status not in NO_BODY_STATUSES


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason_of(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def encode_head(first_line: str, headers: Iterable[tuple[str, str]], tail: str = "\r\n") -> bytes:
    """A start line and header block as bytes; `tail` ends it (extra header lines + CRLF).
    Raises ValueError if a name or value holds CR or LF (a header could be smuggled)."""
    lines = [first_line, *[f"{name}: {value}" for name, value in headers]]
    text = "\r\n".join(lines) + "\r\n" + tail
    expected = len(lines) + tail.count("\n")
    if text.count("\n") != expected or text.count("\r") != expected:
        raise ValueError("CR or LF inside a header")
    return text.encode("utf-8", "surrogateescape")


class _Clock:
    """The Date header value, formatted once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)
        return self._value


DATE = _Clock()


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """The downstream connection's facts, read once when it is made: the client's address,
    the local port it reached and its TLS version (None over plain TCP)."""

    address: str
    local_port: int
    tls_version: str | None


class Connection(Protocol):
    """What a request's body and its responses need of the connection they came on."""

    @property
    def will_close(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def send_continue(self) -> None: ...

    def body_consumed(self) -> None: ...

    def close_after_response(self) -> None: ...

    def kill(self) -> None: ...


class Body:
    """A request body as it arrives; read by one consumer, in the chunks received."""

    __slots__ = ("_chunks", "_conn", "_eof", "_error", "_size", "_waiter", "expect_continue")

    def __init__(self, conn: Connection | None, expect_continue: bool) -> None:
        self._conn = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = conn is None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.expect_continue = expect_continue

    # fed by the protocol
    def feed(self, data: bytes) -> int:
        self._chunks.append(data)
        self._size += len(data)
        self._wake()
        return self._size

    def finish(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._eof:
            self._error = exc
        self._wake()

    # read by the handler
    def send_continue(self) -> None:
        """The interim `100 Continue`, once, if the client asked for it."""
        if self.expect_continue:
            self.expect_continue = False
            if self._conn is not None:
                self._conn.send_continue()

    def is_eof(self) -> bool:
        return self._eof and not self._chunks

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_any():
            yield chunk

    async def read_any(self) -> bytes:
        """Every byte buffered so far, waiting for some if none; b"" at the end."""
        self.send_continue()  # reading the body means it is wanted
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._conn is not None:
            self._conn.body_consumed()
        return data

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Request:
    """One parsed request head, its body stream and the facts of the connection it came on."""

    __slots__ = (
        "_conn",
        "body_exists",
        "content",
        "content_length",
        "headers",
        "keep_alive",
        "method",
        "peer",
        "raw_path",
        "version",
    )

    def __init__(
        self,
        conn: Connection,
        peer: PeerInfo,
        method: str,
        raw_path: str,
        version: tuple[int, int],
        headers: CIMultiDict[str],
        keep_alive: bool,
        content: Body,
        content_length: int | None,
        body_exists: bool,
    ) -> None:
        self._conn = conn
        self.peer = peer
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content = content
        self.content_length = content_length
        self.body_exists = body_exists

    def send_continue(self) -> None:
        """Answer `Expect: 100-continue` now that the request is allowed (RFC 9110 §10.1.1)."""
        self.content.send_continue()

    def abort(self) -> None:
        """Cut the connection at once: after a response has started, the only way to say it
        failed, so that a truncated body cannot pass for a complete one."""
        self._conn.kill()


async def read_capped(
    request: Request,
    cap: int,
    too_large: Callable[[], Exception],
    counted: Callable[[int], None] | None = None,
) -> bytes:
    """The whole body, never holding more than `cap` bytes of it: over `cap` raises
    `too_large()`, by its declared length before `100 Continue` and before any byte is read.
    `counted` hears each chunk's size as it is read, the one that broke the cap included.
    The body timers of protocol.py bound the wait."""
    length = request.content_length
    if length is not None and length > cap:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read_any():  # the first read sends `100 Continue`
        size += len(chunk)
        if counted is not None:
            counted(len(chunk))
        if size > cap:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


class Response:
    """A whole response; written with its head in one call by the protocol."""

    __slots__ = ("body", "close", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | HeaderList | None = None,
        content_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason or reason_of(status)
        self.body = body
        items: HeaderList
        if content_type is None and type(headers) is list:
            items = headers  # a list built for this response (the proxy's): no copy
        else:
            items = [] if content_type is None else [("Content-Type", content_type)]
            if headers is not None:
                items.extend(headers.items() if isinstance(headers, Mapping) else headers)
        self.headers = items
        self.close = False

    def force_close(self) -> None:
        self.close = True

    def encode(self, head_only: bool, close: bool, version: tuple[int, int]) -> bytes:
        """Head and body as sent: Content-Length from the body, Date unless given."""
        body = has_body(self.status)
        length = f"Content-Length: {len(self.body)}" if body else ""
        head = _response_head(self.status, self.reason, self.headers, length, close, version)
        if head_only or not body or not self.body:
            return head
        return head + self.body


def _response_head(
    status: int,
    reason: str,
    headers: HeaderList,
    framing: str,
    close: bool,
    version: tuple[int, int],
) -> bytes:
    """A response's status line and header block, in one pass over `headers` (this runs for
    every answer): their framing headers dropped for `framing` (a line, or ""), Date added
    unless given, and Connection as the connection goes on. Refuses CR or LF inside a line."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    dated = False
    for name, value in headers:
        lname = name.lower()
        if lname == "content-length" or lname == "transfer-encoding":
            continue
        dated = dated or lname == "date"
        lines.append(f"{name}: {value}")
    if framing:
        lines.append(framing)
    if not dated:
        lines.append(f"Date: {DATE.now()}")
    if close:
        lines.append("Connection: close")
    elif version < (1, 1):
        lines.append("Connection: keep-alive")
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("CR or LF inside a header")
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")


class StreamResponse:
    """A response whose body the handler writes as it comes: `content_length` bytes if given,
    else chunked (HTTP/1.1) or ended by the close (HTTP/1.0). `prepare()` sends the head;
    `write_eof()` ends it. Framing headers among `headers` are ignored (rule 3)."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_head_only",
        "content_length",
        "headers",
        "prepared",
        "reason",
        "status",
    )

    def __init__(
        self,
        *,
        status: int = 200,
        reason: str | None = None,
        headers: HeaderList | None = None,
        content_length: int | None = None,
    ) -> None:
        self.status = status
        self.reason = reason or reason_of(status)
        self.headers: HeaderList = headers if headers is not None else []  # framing: on sending
        self.content_length = content_length
        self.prepared = False
        self._chunked = False
        self._head_only = False
        self._conn: Connection | None = None

    async def prepare(self, request: Request) -> None:
        conn = request._conn
        self._conn = conn
        self.prepared = True
        body = has_body(self.status)
        self._head_only = request.method == "HEAD" or not body
        length = self.content_length if body else None
        close = not request.keep_alive or conn.will_close or not request.content.is_eof()
        if length is None and not self._head_only:
            if request.version >= (1, 1):
                self._chunked = True
            else:
                close = True  # an HTTP/1.0 body without a length ends with the connection
        if close:
            conn.close_after_response()
        framing = ""
        if self._chunked:
            framing = "Transfer-Encoding: chunked"
        elif length is not None:
            framing = f"Content-Length: {length}"
        conn.write(
            _response_head(self.status, self.reason, self.headers, framing, close, request.version)
        )

    async def write(self, chunk: bytes) -> None:
        conn = self._conn
        if conn is None or self._head_only or not chunk:
            return
        if self._chunked:
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            conn.write(chunk)
        await conn.drain()

    async def write_eof(self) -> None:
        if self._conn is not None and self._chunked:
            self._conn.write(b"0\r\n\r\n")
            self._chunked = False


AnyResponse = Response | StreamResponse
