"""A raw recording upstream: it keeps every byte the gateway sends on each connection and
answers with scripted bytes, so tests can see framing exactly as it crossed the wire and can
play a confused or hostile service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import h11


@dataclass
class Seen:
    """One upstream connection: the bytes received, and whether the gateway ended it."""

    data: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def requests(self) -> list[tuple[h11.Request, bytes]]:
        """The whole requests (head, body) a strict reader finds in the bytes; one left
        incomplete is not counted. h11 raises on bad framing."""
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(bytes(self.data))
        found: list[tuple[h11.Request, bytes]] = []
        head: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return found
            if isinstance(event, h11.Request):
                head, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                found.append((head, body))
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()


# An answer script gets the request head as read and returns the bytes to send back (a list:
# written apart, a moment between them); `early` answers as soon as the head is in.
Answer = Callable[[bytes], bytes | list[bytes]]


def fixed(answer: bytes | list[bytes]) -> Answer:
    return lambda head: answer


OK = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class RawUpstream:
    """Listens on 127.0.0.1, port 0; `url` is set once started."""

    def __init__(self, answer: Answer = OK, *, early: bool = False, hold: bool = False) -> None:
        self.answer = answer
        self.early = early
        self.hold = hold  # never answer (until `release` is set)
        self.close_after: Callable[[bytes], bool] = lambda head: False  # then end the connection
        self.release = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections: list[Seen] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.release.set()
        for writer in self._writers:  # none outlives the test (no transport left to the GC)
            writer.close()

    def requests(self) -> list[tuple[h11.Request, bytes]]:
        return [r for seen in self.connections for r in seen.requests()]

    async def _send(self, writer: asyncio.StreamWriter, head: bytes) -> None:
        answer = self.answer(head)
        for i, part in enumerate([answer] if isinstance(answer, bytes) else answer):
            if i:
                await asyncio.sleep(0.05)
            writer.write(part)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = Seen()
        self.connections.append(seen)
        self._writers.add(writer)
        self.connected.set()
        recorded = _Recording(reader, seen)
        try:
            async for head in recorded.heads():
                if self.hold:
                    await self.release.wait()
                if self.early:
                    await self._send(writer, head)
                await recorded.body(head)
                if not self.early:
                    await self._send(writer, head)
                if self.close_after(head):
                    writer.write_eof()  # the answer ends with the connection
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            try:
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                    while chunk := await reader.read(65536):  # keep recording to the end
                        seen.data += chunk
            finally:  # even when cancelled
                seen.ended.set()
                self._writers.discard(writer)
                writer.close()


class _Recording:
    """Reads requests off a connection, recording every byte read."""

    def __init__(self, reader: asyncio.StreamReader, seen: Seen) -> None:
        self._reader = reader
        self._seen = seen

    async def heads(self) -> AsyncIterator[bytes]:
        while True:
            try:
                head = await self._reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                self._seen.data += exc.partial
                return
            self._seen.data += head
            yield head

    async def _read(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self._seen.data += data
        return data

    async def _line(self) -> bytes:
        line = await self._reader.readuntil(b"\r\n")
        self._seen.data += line
        return line

    async def body(self, head: bytes) -> None:
        """Read the body the head declares (Content-Length or chunked)."""
        lines = head.lower().split(b"\r\n")
        for line in lines:
            if line.startswith(b"content-length:"):
                await self._read(int(line.split(b":", 1)[1]))
                return
        if b"transfer-encoding: chunked" in lines:
            while size := int((await self._line()).split(b";")[0], 16):
                await self._read(size + 2)
            await self._line()
