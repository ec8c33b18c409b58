"""One downstream HTTP/1.1 connection, parsed by llhttp (httptools), and the accept loop.

Rule 1: a request head must arrive whole within `header_timeout_seconds` of its first byte
(or of the connection's start), however slowly it trickles in: slowloris is cut off with 408.
Rule 2: the head is bounded (request line, header count, total header bytes): 414 / 431.
Rule 3: protocol errors answer with a fixed JSON body that never echoes the input.
Rule 4: one request is handled at a time per connection, in its own task (cancelled if the
client leaves); pipelined requests wait their turn, and reading pauses while they do or while
a request body waits for its reader beyond BODY_HIGH_WATER bytes.
Rule 5: a connection closes after a response whose request body was not read to its end,
lingering (reading and dropping) for LINGER_SECONDS so that the client gets the answer.
Rule 6: nothing of a request reaches the handler before llhttp has parsed its whole head
cleanly; Upgrade and CONNECT are refused (501), since their bodies are never parsed.
Rule 7: a body must keep moving (`body_timeout`) and arrive whole within `request_timeout` of
its head; bytes that carry no body (chunk extensions, trailers) count against the head
limits. A body that breaks either fails its reader with the error that answers it (408, 400).
Rule 8: an HTTP/1.1 request names exactly one Host (RFC 9112 §3.2), else 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal, cast

import httptools
from multidict import CIMultiDict

from edgeauth.errors import BadRequestBody, ProxyError, RequestTimeout, TrailersTooLarge
from edgeauth.flowcontrol import FlowControl
from edgeauth.messages import Body, PeerInfo, Request, Response, StreamResponse
from edgeauth.rendering import fixed_answer

log = logging.getLogger(__name__)

BODY_HIGH_WATER = 256 * 1024
WRITE_HIGH_WATER = 1024 * 1024
LINGER_SECONDS = 2.0
DRAIN_POLL_SECONDS = 0.05  # a stop re-checks fresh connections this often
Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


BAD_REQUEST = fixed_answer(b"400 Bad Request", b"Bad request")
HEAD_TIMEOUT = fixed_answer(b"408 Request Timeout", b"Request header timeout")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BODY_TIMEOUT = fixed_answer(b"408 Request Timeout", b"Request timeout")
URI_TOO_LONG = fixed_answer(b"414 URI Too Long", b"Request-URI too long")
HEAD_TOO_LARGE = fixed_answer(
    b"431 Request Header Fields Too Large", b"Request header fields too large"
)
NOT_IMPLEMENTED = fixed_answer(b"501 Not Implemented", b"Upgrade and CONNECT are not supported")
SERVER_ERROR_BODY = b'{"message":"An unexpected error occurred"}'
SERVER_ERROR = fixed_answer(b"500 Internal Server Error", b"An unexpected error occurred")


class Limits:
    """The per-connection limits of `[server]`, shared by every connection of a worker."""

    __slots__ = (
        "body_timeout",
        "header_timeout",
        "keepalive_timeout",
        "max_head_bytes",
        "max_header_bytes",
        "max_header_count",
        "max_line_bytes",
        "request_timeout",
    )

    def __init__(
        self,
        header_timeout: float,
        max_line_bytes: int,
        max_header_bytes: int,
        max_header_count: int = 100,
        keepalive_timeout: float = 75.0,
        body_timeout: float = 60.0,
        request_timeout: float = 300.0,
    ) -> None:
        self.header_timeout = header_timeout
        self.max_line_bytes = max_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout
        # request line + CRLF + headers + final CRLF
        self.max_head_bytes = max_line_bytes + max_header_bytes + 4


NO_PEER = PeerInfo("", 0, None)


def _peer_of(transport: asyncio.BaseTransport) -> PeerInfo:
    """The connection's facts, read once per connection, not per request."""
    ssl_object = transport.get_extra_info("ssl_object")
    peername = transport.get_extra_info("peername")
    sockname = transport.get_extra_info("sockname")
    return PeerInfo(
        address=peername[0] if peername else "",
        local_port=sockname[1] if sockname else 0,
        tls_version=ssl_object.version() if ssl_object is not None else None,
    )


class State(enum.Enum):
    """Where a connection is in its request cycle, as its reading sees it: IDLE → HEAD →
    BODY → DONE → IDLE, and NEXT_HEAD for a head pipelined behind an answer; _STEPS holds
    every step. No request is outstanding (queued or being answered) in IDLE and HEAD; one is
    from its head read whole until the last answer is written ("answered", the connection
    kept). A refusal or an unread body stops reading where it is (`_lingering`) and the state
    stays, for its timers still act until the close (a partial head's 408).
    """

    IDLE = "idle"  # the next byte begins a head; the keep-alive timer runs
    HEAD = "head"  # a head is arriving (head timer, head limits)
    BODY = "body"  # a head was read whole; its body is arriving (`_parsing`, body timers)
    DONE = "done"  # every request read is whole; one is outstanding
    NEXT_HEAD = "next head"  # a head is arriving behind an outstanding request

    # The members are singletons: hashing them by identity keeps _STEPS's lookups cheap.
    __hash__ = object.__hash__


# the members by their names: cheaper to read on the hot path than State.IDLE and so on
IDLE, HEAD, BODY, DONE, NEXT_HEAD = State.IDLE, State.HEAD, State.BODY, State.DONE, State.NEXT_HEAD
Step = Literal["head begins", "head whole", "body over", "answered"]
_STEPS: dict[tuple[State, Step], State] = {
    (IDLE, "head begins"): HEAD,
    (HEAD, "head whole"): BODY,
    (BODY, "body over"): DONE,
    (DONE, "answered"): IDLE,
    (DONE, "head begins"): NEXT_HEAD,
    (NEXT_HEAD, "head whole"): BODY,
    (NEXT_HEAD, "answered"): HEAD,
}


class _Refused(Exception):
    """A request broke a limit: answer with the fixed bytes and close. `error` is what a
    handler already reading the request's body gets instead (trailers beyond the limits)."""

    def __init__(self, answer: bytes, error: ProxyError | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.error = error or BadRequestBody()


class Connections:
    """The live connections of one listener group, for stats and a graceful stop."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.connections: set[GatewayProtocol] = set()

    def __call__(self) -> GatewayProtocol:
        return GatewayProtocol(self)

    def pre_shutdown(self) -> None:
        """Idle connections close now; busy ones close after their current response, and
        fresh ones (no request started yet) after their first."""
        for conn in list(self.connections):
            conn.shutdown()

    async def shutdown(self, drain_seconds: float) -> None:
        """Wait up to `drain_seconds` for in-flight requests and for the first request of
        fresh connections (their head timer bounds a silent one), then close what is left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_seconds):
                while busy := [c for c in self.connections if c.task is not None or c.fresh]:
                    tasks = [c.task for c in busy if c.task is not None]
                    if tasks:
                        await asyncio.wait(tasks, timeout=DRAIN_POLL_SECONDS)
                    else:
                        await asyncio.sleep(DRAIN_POLL_SECONDS)
        for conn in list(self.connections):
            conn.kill()


class GatewayProtocol(asyncio.Protocol):
    """One client connection: parses heads and bodies, runs the handler, writes answers.
    Where it is in the request cycle is its `State`."""

    _flow: FlowControl  # backpressure both ways, from connection_made on

    def __init__(self, owner: Connections) -> None:
        self._owner = owner
        self._limits = owner.limits
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self.on_closed: Callable[[], None] | None = None
        self.peer = NO_PEER  # until connection_made
        # the head being parsed
        self._url = b""
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0  # the head's header lines, as counted against max_header_bytes
        self._head_bytes = 0
        self._state = IDLE  # changed by _step() only
        self._stall_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        # the body being parsed: its deadlines, and bytes read since it last moved
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_last = 0.0
        self._body_deadline = 0.0
        self._body_stalled_bytes = 0
        self._trailer_bytes = 0
        self._body_moved = False  # by the read being parsed: a fact of one read, not a state
        self._parsing: Request | None = None  # the request in BODY
        # the requests to answer, oldest first, and the one being answered
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        # How the connection ends: facts beside the state, not states of it, for each can
        # come in any state and the state goes on mattering after it (a queued request still
        # runs, a partial head's timer still answers). `_close_after`: the answer in progress
        # is the last (the client's EOF, a response that cannot keep the connection, a
        # refusal behind it); `closing`: a stop asked for the same; `_lingering`: input is
        # dropped until the close.
        self._close_after = False
        self.closing = False
        self._lingering = False
        # no request started yet: its client may be sending the first one now (a stop waits
        # for it; the head timer ends a silent or slow one, a refusal a bad one)
        self.fresh = True

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        self.peer = _peer_of(transport)
        self._owner.connections.add(self)
        self._flow = FlowControl(stream)
        stream.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_expired)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self._owner.connections.discard(self)
        for timer in (self._head_timer, self._idle_timer, self._stall_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        gone = ConnectionResetError("the client closed the connection")
        for request in (self._parsing, *self._queue):
            if request is not None:
                request.content.fail(gone)
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._flow.connection_lost(gone)
        on_closed, self.on_closed = self.on_closed, None
        if on_closed is not None:
            on_closed()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # an unread body after the answer: dropped until we close
        # Bytes after the last complete message can only be a head: the idle connection's
        # next request, or one pipelined behind the request being answered.
        state = self._state
        counting = (
            state is IDLE or state is HEAD or (self._task is not None and self._parsing is None)
        )
        if counting:
            self._head_bytes += len(data)
        in_body = self._parsing
        self._body_moved = False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._fail_body(cause.error, cause.answer)
            else:
                self._fail_body(BadRequestBody(), BAD_REQUEST)
            return
        if self._parsing is not None:
            self._body_read(len(data) if in_body is self._parsing else 0)
        if self._task is None and self._queue and not self._flow.write_paused:
            self._next()  # only now: llhttp has accepted the whole head
        if counting and (self._state is HEAD or self._state is NEXT_HEAD):
            # Only a head left incomplete by this read needs its deadline (armed now, at
            # its first bytes' arrival); one that arrived whole costs no timer.
            if self._head_bytes > self._limits.max_head_bytes:
                self._refuse(HEAD_TOO_LARGE)
            elif self._head_timer is None:
                self._head_timer = self._loop.call_later(
                    self._limits.header_timeout, self._head_expired
                )

    def eof_received(self) -> bool | None:
        if self._parsing is not None:
            self._parsing.content.fail(ConnectionResetError("the body ended early"))
        if self._task is None:
            return False  # nothing in flight: close
        self._close_after = True
        return True  # keep the transport open to answer the request in flight

    def pause_writing(self) -> None:
        """The client is not reading: no new request starts until it does, and a client
        that reads nothing for `keepalive_timeout` is cut off."""
        self._flow.pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._limits.keepalive_timeout, self.kill)

    def resume_writing(self) -> None:
        self._flow.resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._task is None and self._queue:
            self._start_next()

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._step("head begins")
        self._url = b""
        self._raw_headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_line_bytes:
            raise _Refused(URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        too_many = len(self._raw_headers) > self._limits.max_header_count
        if self._state is not BODY:  # a head's header, not a trailer
            self._header_bytes += len(name) + len(value) + 4
            if too_many:
                raise _Refused(HEAD_TOO_LARGE)
            return
        # a chunked body's trailers: bounded like a head, then dropped (never forwarded)
        self._trailer_bytes += len(name) + len(value) + 4
        if too_many or self._trailer_bytes > self._limits.max_header_bytes:
            raise _Refused(HEAD_TOO_LARGE, TrailersTooLarge())

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._step("head whole")
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if parser.should_upgrade():  # Upgrade or CONNECT: llhttp would not parse a body
            raise _Refused(NOT_IMPLEMENTED)
        if self._header_bytes > self._limits.max_header_bytes:
            raise _Refused(HEAD_TOO_LARGE)
        # Decoded in one comprehension and handed to the C multidict whole: this runs for
        # every request, and a Python loop per header cost more than the rest of it.
        headers: CIMultiDict[str] = CIMultiDict(
            [
                (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                for name, value in self._raw_headers
            ]
        )
        version = parser.get_http_version()
        hosts = len(headers.getall("host", ()))
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise _Refused(BAD_REQUEST)
        declared = headers.get("content-length")
        length = None if declared is None else int(declared)  # llhttp checked: one number
        chunked = "transfer-encoding" in headers
        expects: list[str] = headers.getall("expect", [])
        expect = bool(expects) and expects[-1].lower() == "100-continue"
        request = Request(
            self,
            self.peer,
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            (1, 1) if version == "1.1" else (1, 0),
            headers,
            parser.should_keep_alive(),
            Body(self, expect and version == "1.1"),
            length,
            chunked or bool(length),
        )
        self._raw_headers = []  # from here on, trailers
        self._parsing = request
        self._body_stalled_bytes = self._trailer_bytes = 0
        self._queue.append(request)
        if self._task is not None or self._flow.write_paused or len(self._queue) > 1:
            self._flow.pause_reading()  # pipelined: read no further until its turn

    def on_chunk_header(self) -> None:
        self._body_moved = True

    def on_chunk_complete(self) -> None:
        self._body_moved = True

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is None:
            return
        self._body_moved = True
        if request.content.feed(body) > BODY_HIGH_WATER:
            self._flow.pause_reading()

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.content.finish()
            self._parsing = None
        self._step("body over")
        self._stop_body_timer()

    # -- used by messages.py ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def send_continue(self) -> None:
        """`100 Continue`: the body's idle time counts from now, not from its head."""
        self._body_last = self._loop.time()
        self.write(CONTINUE)

    async def drain(self) -> None:
        await self._flow.drain()

    def body_consumed(self) -> None:
        """A reader took the buffered body: read on unless a pipelined request waits."""
        if not self._queue_waiting():
            self._resume_reading()

    @property
    def will_close(self) -> bool:
        """Whether the connection ends after the response in progress, whatever it says."""
        return self._close_after or self.closing

    def close_after_response(self) -> None:
        self._close_after = True

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task answering the current request, if any."""
        return self._task

    def shutdown(self) -> None:
        self.closing = True
        if self._task is None and not self.fresh:
            self.abort()

    def abort(self) -> None:
        """Close: politely if everything written has left, at once if the client stalls."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def kill(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the request cycle ----------------------------------------------------------------

    def _step(self, step: Step) -> None:
        """Move along the request cycle (State); a step the cycle has not is a KeyError."""
        self._state = _STEPS[self._state, step]

    # -- running requests ---------------------------------------------------------------

    def _queue_waiting(self) -> bool:
        return len(self._queue) > (0 if self._task is None else 1)

    def _next(self) -> None:
        request = self._queue[0]
        self.fresh = False
        self._task = self._loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            response = await self._owner.handler(request)
        except asyncio.CancelledError:
            return  # the client left; connection_lost has cleaned up
        except Exception:
            log.exception("unhandled error in the request handler")
            response = Response(500, body=SERVER_ERROR_BODY, content_type="application/json")
            response.force_close()
        self._finish(request, response)

    def _finish(self, request: Request, response: Response | StreamResponse) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # cut (a failed answer aborts): nothing more is written or started
        unread = not request.content.is_eof()
        close = (
            self._close_after
            or self.closing
            or not request.keep_alive
            or unread
            or (isinstance(response, Response) and response.close)
        )
        if isinstance(response, Response):
            try:
                data = response.encode(request.method == "HEAD", close, request.version)
            except ValueError:
                log.exception("response header with CR or LF (request %s)", request.raw_path)
                data, close = SERVER_ERROR, True
            self.transport.write(data)
        elif not response.prepared:
            self.transport.write(SERVER_ERROR)
            close = True
        self._queue.popleft()
        self._task = None
        if close:
            self._close(linger=unread)
            return
        if self._queue:
            if not self._flow.write_paused:
                self._start_next()
            return
        self._step("answered")
        if self._head_timer is not None and self._state is IDLE:
            self._head_timer.cancel()  # armed by stray bytes during the answer: idle now
            self._head_timer = None
        self._resume_reading()
        self._idle_since = self._loop.time()
        if self._idle_timer is None:  # one timer per idle period, not one per request
            self._idle_timer = self._loop.call_later(
                self._limits.keepalive_timeout, self._idle_expired
            )

    def _start_next(self) -> None:
        """Answer the next pipelined request; read on once none is left waiting."""
        self._next()
        if not self._queue_waiting():
            self._resume_reading()

    def _resume_reading(self) -> None:
        """Read again after a pause of the gateway's own making, which a body's idle time
        never counts."""
        if self._flow.resume_reading():
            self._body_last = self._loop.time()

    def _close(self, *, linger: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if linger and not transport.is_closing():
            self._lingering = True  # the unread body is dropped from now on: no timer for it
            self._stop_body_timer()
            self._resume_reading()
            self._loop.call_later(LINGER_SECONDS, transport.close)
            return
        transport.close()

    # -- the body being parsed --------------------------------------------------------------

    def _body_read(self, stalled: int) -> None:
        """A read left a body incomplete. `stalled` bytes of it (the read's, when it carried no
        body and no chunk boundary) count against the head limit: trailers and chunk
        extensions are framing, bounded like a head, never buffered without limit."""
        if self._body_moved:
            self._body_stalled_bytes = 0
        else:
            self._body_stalled_bytes += stalled
            if self._body_stalled_bytes > self._limits.max_header_bytes:
                self._fail_body(TrailersTooLarge(), HEAD_TOO_LARGE)
                return
        self._body_last = now = self._loop.time()
        if self._body_timer is None:  # the body's first partial read: its deadlines start
            limits = self._limits
            self._body_deadline = now + limits.request_timeout
            self._body_timer = self._loop.call_at(
                min(now + limits.body_timeout, self._body_deadline), self._body_expired
            )

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        """The body stopped moving, or is late as a whole; time the gateway itself holds
        reading back (a slow reader upstream, a pipelined turn) never counts."""
        self._body_timer = None
        if self._parsing is None:
            return
        now = self._loop.time()
        if self._flow.read_paused or self._parsing.content.expect_continue:
            # held back by the gateway, or a client waiting for `100 Continue`
            self._body_deadline += now - self._body_last
            self._body_last = now
        due = min(self._body_last + self._limits.body_timeout, self._body_deadline)
        if now < due:
            self._body_timer = self._loop.call_at(due, self._body_expired)
            return
        self._fail_body(RequestTimeout(), BODY_TIMEOUT)

    def _fail_body(self, exc: ProxyError, answer: bytes) -> None:
        """The body being parsed is broken: its reader gets `exc`, which answers it, and
        nothing more is read. Without a handler running, `answer` is written and we close."""
        request, self._parsing = self._parsing, None
        if self._state is BODY:
            self._step("body over")
        self._stop_body_timer()
        if request is not None:
            request.content.fail(exc)
            queue = self._queue
            if queue and queue[-1] is request and (self._task is None or len(queue) > 1):
                queue.pop()  # not started: it never will be
        self._refuse(answer)

    def _idle_expired(self) -> None:
        """Close after `keepalive_timeout` without a request; busy means not idle (the end
        of the answer arms the timer again)."""
        self._idle_timer = None
        if self._state is not IDLE:
            return
        left = self._idle_since + self._limits.keepalive_timeout - self._loop.time()
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._idle_expired)
        else:
            self.abort()

    def _head_expired(self) -> None:
        """A partial head gets a 408 (or, pipelined behind an answer in progress, the
        connection is cut); a connection that never said anything is just closed."""
        self._head_timer = None
        if self._state is HEAD or self._state is NEXT_HEAD:
            self._refuse(HEAD_TIMEOUT)
        elif self._state is IDLE:
            self._refuse(b"")

    def _refuse(self, answer: bytes) -> None:
        """Read no more: answer and close; or, with a request accepted before this one, answer
        that and close after it. The refused request then gets no answer, for an answer in its
        place would pass for the earlier request's: one response per request, or a close."""
        self._lingering = True
        if self._task is not None or self._queue:
            self._close_after = True
            if self._task is None and not self._flow.write_paused:
                self._next()
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if answer and self._parser.get_method() == b"HEAD":
                answer = answer[: answer.index(b"\r\n\r\n") + 4]  # an answer to HEAD: no body
            if answer:
                transport.write(answer)
            transport.close()
