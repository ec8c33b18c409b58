"""The recording upstream: a plain TCP server that keeps every byte of every connection.

It runs its own asyncio loop in a thread. Each request is read by a fresh strict h11 server
connection (the bytes a request leaves over start the next one), and answered with the bytes
its example scripts for it (looked up by the request's marker in the path), written in the
segments the script gives. Nothing here interprets leniently: a request h11 refuses is
recorded as an error of that connection and reading it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import h11

T = TypeVar("T")

MARKER = re.compile(rb"m[0-9]+x")
DEFAULT_ANSWER = "normal"


@dataclass
class UpRequest:
    """One request as the upstream read it."""

    conn: int
    method: str
    target: str
    headers: list[tuple[str, str]]  # as received (names lower-cased by h11)
    raw_head: bytes
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False

    @property
    def marker(self) -> str | None:
        found = MARKER.search(self.target.encode("latin-1"))
        return found.group(0).decode() if found else None

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]


@dataclass
class UpConnection:
    """Everything one connection carried, and how it ended."""

    ident: int
    data: bytearray = field(default_factory=bytearray)
    requests: list[UpRequest] = field(default_factory=list)
    error: str | None = None  # h11 refused the bytes
    pending: bytes = b""  # bytes of an incomplete request when the connection ended or now
    ended_by_peer: bool = False  # the gateway closed or reset it
    closed_by_us: bool = False  # we closed it (a script, or the end of an example)
    open: bool = True


# An answer: the segments to write for a request, whether to write them as soon as the head
# has arrived (before the body), and whether to close the connection afterwards.
@dataclass(frozen=True)
class Answer:
    segments: tuple[bytes, ...]
    early: bool = False
    close: bool = False
    pause: float = 0.0


AnswerFor = Callable[[str, str | None], Answer]  # (method, marker) -> answer


class RecordingUpstream:
    """Start with `start()`; `answers` decides the bytes for each request."""

    def __init__(self, answer_for: AnswerFor) -> None:
        self.answer_for = answer_for
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: list[UpConnection] = []
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next = 0
        self._ready = threading.Event()

    # -- control, from the test thread ----------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recording-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the recording upstream did not start")

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def take(self, *, close: bool) -> list[UpConnection]:
        """The connections seen since the last take; `close` ends those still open."""
        return self._call(self._take(close), 10)

    def open_with_pending(self) -> list[int]:
        """Connections still open that hold the unfinished part of a request."""
        return self._call(self._open_with_pending(), 5)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 22)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers.values():
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # An aborted transport closes its socket a loop turn later: let that happen before the
        # loop stops, or the socket is left for the garbage collector (a ResourceWarning in
        # whichever test runs then).
        await asyncio.sleep(0.05)

    async def _take(self, close: bool) -> list[UpConnection]:
        if close:
            for ident, writer in list(self._writers.items()):
                conn = self._conns_by_id(ident)
                if conn is not None:
                    conn.closed_by_us = True
                writer.transport.abort()
            # let the readers see their end
            for _ in range(50):
                if not self._writers:
                    break
                await asyncio.sleep(0.002)
        taken, self._conns = self._conns, [c for c in self._conns if c.open]
        return [_copy(c) for c in taken]

    async def _open_with_pending(self) -> list[int]:
        return [c.ident for c in self._conns if c.open and c.pending]

    def _conns_by_id(self, ident: int) -> UpConnection | None:
        for conn in self._conns:
            if conn.ident == ident:
                return conn
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._next += 1
        conn = UpConnection(self._next)
        self._conns.append(conn)
        self._writers[conn.ident] = writer
        try:
            await self._read_requests(conn, reader, writer)
        except (ConnectionError, OSError):
            conn.ended_by_peer = not conn.closed_by_us
        except asyncio.CancelledError:
            pass
        finally:
            conn.open = False
            self._writers.pop(conn.ident, None)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _read_requests(
        self, conn: UpConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 22)
        start = 0  # offset in conn.data where the current request starts
        current: UpRequest | None = None
        answer: Answer | None = None
        while True:
            event: Any
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                conn.error = f"h11 refused the request at byte {start}: {exc}"
                conn.pending = bytes(conn.data[start:])
                return
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    conn.ended_by_peer = not conn.closed_by_us
                    conn.pending = bytes(conn.data[start:])
                    if conn.pending.strip(b"\r\n") == b"":
                        conn.pending = b""
                    return
                conn.data += data
                conn.pending = bytes(conn.data[start:])
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head_end = conn.data.find(b"\r\n\r\n", start)
                raw_head = bytes(conn.data[start : head_end + 4]) if head_end >= 0 else b""
                current = UpRequest(
                    conn.ident,
                    event.method.decode("latin-1"),
                    event.target.decode("latin-1"),
                    [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers],
                    raw_head,
                )
                conn.requests.append(current)
                answer = self.answer_for(current.method, current.marker)
                if answer.early:
                    if not await self._answer(conn, writer, answer):
                        return
                    answer = None
            elif isinstance(event, h11.Data):
                assert current is not None
                current.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                current.complete = True
                leftover, _ = parser.trailing_data
                start = len(conn.data) - len(leftover)
                conn.pending = bytes(leftover)
                if answer is not None and not await self._answer(conn, writer, answer):
                    return
                answer = None
                current = None
                # A fresh parser per request: the upstream judges each request on its own.
                parser = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 22)
                if leftover:
                    parser.receive_data(bytes(leftover))
            else:  # ConnectionClosed and the like
                return

    async def _answer(
        self, conn: UpConnection, writer: asyncio.StreamWriter, answer: Answer
    ) -> bool:
        """Write one scripted answer; False if the connection is to end now."""
        for i, segment in enumerate(answer.segments):
            if i and answer.pause:
                await asyncio.sleep(answer.pause)
            writer.write(segment)
            await writer.drain()
        if answer.close:
            conn.closed_by_us = True
            writer.transport.close()
            return False
        return True


def _copy(conn: UpConnection) -> UpConnection:
    return UpConnection(
        conn.ident,
        bytearray(conn.data),
        [
            UpRequest(
                r.conn,
                r.method,
                r.target,
                list(r.headers),
                r.raw_head,
                bytearray(r.body),
                r.complete,
            )
            for r in conn.requests
        ],
        conn.error,
        conn.pending,
        conn.ended_by_peer,
        conn.closed_by_us,
        conn.open,
    )
