"""The raw TCP/TLS client of the stream-tcp scenario, run as its own process pinned like the
other generators: `python -m benchmarks.tcpload SPEC.json`; the result is one
`BENCH_JSON {...}` line on stdout, in the built-in generator's format (benchmarks.aioload).

It speaks the command protocol of `benchmarks.baselines.tcp_upstream` through whatever is in
front of it (`tls://host:port`: a TLS-terminating proxy; `tcp://host:port`: the upstream
itself). Modes:
- `up`: one connection sends `size` bytes from one reused 1 MiB block; the time runs from the
  command to the upstream's byte count (8 bytes, sent once it has read them all), so the
  figure is of bytes that reached the upstream, not bytes left in a buffer on the way;
- `down`: one connection asks for `size` bytes and reads them into one reused 1 MiB buffer
  (recv_into); the time runs from the command to the last byte;
- `connect`: `connections` clients, each in a loop for `duration` seconds (after `warmup`
  seconds not counted): connect, full TLS handshake (no session resumption), one 16-byte
  echo, close (and wait until closed). Latency is per connection, from connect to the
  echo's last byte.
Certificates are not verified: these are the harness's own loopback servers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop

from benchmarks.aioload import GRID, percentiles
from benchmarks.baselines.tcp_upstream import BLOCK, command

ECHO = b"0123456789abcdef"


def _context(url: str) -> ssl.SSLContext | None:
    if urlsplit(url).scheme != "tls":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 0)


def _open(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    context = _context(url)
    return sock if context is None else context.wrap_socket(sock)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            break
        data += more
    return data


def run_stream(spec: dict[str, Any]) -> dict[str, Any]:
    """One upload (`up`) or download (`down`) of `size` bytes on one connection."""
    size = int(spec["size"])
    up = spec["mode"] == "up"
    with _open(spec["url"]) as sock:
        start = time.perf_counter()
        cpu = time.process_time()
        sock.sendall(command(b"U" if up else b"D", size))
        if up:
            block = memoryview(BLOCK)
            left = size
            while left > 0:
                sock.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))
            answer = _read_exactly(sock, 8)
            received = int.from_bytes(answer, "big") if len(answer) == 8 else 0
        else:
            buffer = bytearray(1 << 20)
            received = 0
            while received < size:
                got = sock.recv_into(buffer)
                if not got:
                    break
                received += got
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    ok = received == size
    return {
        "duration_s": seconds,
        "responses": 1 if ok else 0,
        "bytes": received,
        "socket_errors": 0 if ok else 1,
        "statuses": {"ok": 1} if ok else {},
        "percentiles": [[p, round(seconds * 1000, 3)] for p in GRID],
        "by_status": {},
        "received": received,
        "complete": ok,
        "mb_per_s": round(received / seconds / 1e6, 1) if seconds > 0 else 0.0,
        "client_cpu_percent": round(100 * cpu / seconds, 1) if seconds > 0 else 0.0,
    }


class Connections:
    """The `connect` mode's clients and what they counted."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.host, self.port = _address(spec["url"])
        self.context = _context(spec["url"])
        self.request = command(b"E", len(ECHO)) + ECHO
        self.samples: list[float] = []
        self.failed = 0
        self.recording = False

    async def one(self) -> None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.context)
            try:
                writer.write(self.request)
                echoed = await reader.readexactly(len(ECHO))
            finally:
                writer.close()
                await writer.wait_closed()  # the TLS close too: it is part of the cycle
            ok = echoed == ECHO
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            ok = False
        if self.recording:
            if ok:
                self.samples.append((time.perf_counter() - started) * 1000)
            else:
                self.failed += 1

    async def loop(self, until: float) -> None:
        while time.perf_counter() < until:
            await self.one()

    async def run(self, clients: int, seconds: float) -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(self.loop(until) for _ in range(clients)))


async def run_connect(spec: dict[str, Any]) -> dict[str, Any]:
    clients = int(spec["connections"])
    counted = Connections(spec)
    if float(spec.get("warmup") or 0) > 0:
        await counted.run(clients, float(spec["warmup"]))
    counted.recording = True
    start = time.perf_counter()
    cpu = time.process_time()
    await counted.run(clients, float(spec["duration"]))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    ordered = sorted(counted.samples)
    n = len(ordered)
    return {
        "duration_s": seconds,
        "responses": n,
        "bytes": n * len(ECHO),
        "socket_errors": counted.failed,
        "statuses": {"ok": n},
        "percentiles": percentiles(ordered),
        "by_status": {},
        "mean_ms": round(sum(ordered) / n, 4) if n else 0.0,
        "max_ms": round(ordered[-1], 4) if n else 0.0,
        "mode": "connect",
        "client_cpu_percent": round(100 * cpu / seconds, 1) if seconds > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0], encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    result = uvloop.run(run_connect(spec)) if spec["mode"] == "connect" else run_stream(spec)
    sys.stdout.write("BENCH_JSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
