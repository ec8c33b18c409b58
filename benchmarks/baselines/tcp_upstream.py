"""The upstream of the stream-tcp scenario: a plain-TCP sink, source and echo that costs nearly
nothing per byte, so that it never sets the pace of a TLS stream in front of it.

Each connection starts with a 9-byte command, one letter and a size (8 bytes, big-endian):
- `U size`: the upload sink: read `size` bytes into one reused 1 MiB buffer (recv_into, no
  copy), then answer the count received (8 bytes) and close;
- `D size`: the download source: send `size` bytes from one pre-built 1 MiB block, as fast as
  the socket takes them (writing stops while the transport's buffer is above its high mark),
  then close;
- `E size`: echo `size` bytes back, then close (the new-connections run: one small echo).
Anything else closes the connection. uvloop runs it, one process, on the generator's core.

`python -m benchmarks.baselines.tcp_upstream --port P`
"""

from __future__ import annotations

import argparse
import asyncio
import struct

import uvloop

HEADER = struct.Struct(">cQ")
BLOCK = bytes(1 << 20)
HIGH_WATER = 4 << 20


def command(op: bytes, size: int) -> bytes:
    """The 9 bytes a client sends first."""
    return HEADER.pack(op, size)


class Connection(asyncio.BufferedProtocol):
    """One client connection: the command, then the sink, the source or the echo."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(1 << 20))
        self._head = b""
        self._op = b""
        self._left = 0
        self._received = 0
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = self._buffer[:nbytes]
        if not self._op:
            missing = HEADER.size - len(self._head)
            self._head += bytes(data[:missing])
            data = data[missing:]
            if len(self._head) < HEADER.size:
                return
            self._start(*HEADER.unpack(self._head))
        if not data or self._op == b"D":
            return
        self._received += len(data)
        self._left -= len(data)
        if self._op == b"E":
            self.transport.write(bytes(data))
        if self._left <= 0:
            self._finish()

    def _finish(self) -> None:
        if self._op == b"U":
            self.transport.write(self._received.to_bytes(8, "big"))
        self.transport.close()

    def _start(self, op: bytes, size: int) -> None:
        if op not in (b"U", b"D", b"E"):
            self.transport.close()
            return
        self._op = op
        self._left = size
        if op == b"D":
            self._send()
        elif size == 0:
            self._finish()

    def _send(self) -> None:
        while self._left > 0 and not self._paused:
            piece = BLOCK if self._left >= len(BLOCK) else BLOCK[: self._left]
            self.transport.write(piece)
            self._left -= len(piece)
        if self._left <= 0:
            self.transport.close()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._op == b"D" and not self.transport.is_closing():
            self._send()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TCP sink, source and echo for stream-tcp")
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args(argv).port))


if __name__ == "__main__":
    main()
