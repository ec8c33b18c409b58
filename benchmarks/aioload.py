"""The built-in load generator (aiohttp): used when wrk is missing, for open-loop latency, for
streams and for holding idle connections. Run as its own process, pinned like wrk:
`python -m benchmarks.aioload SPEC.json`; the result is one `BENCH_JSON {...}` line on stdout.

Modes:
- `requests`, closed loop (default): `connections` loops each send the next request as soon as
  the previous answer is read, like wrk. Latency is per request, from send to last byte.
- `requests` with `rate` > 0, open loop: request i is due at start + i/rate whatever happened
  before, and its latency is counted from when it was *due*, so a stalled server cannot hide
  its queue by slowing the generator down (no coordinated omission).
- `download` / `upload`: one stream of `size` bytes; the upload checks the byte count the
  backend reports, so an early answer cannot pass for a forwarded body.
- `idle`: open `connections` TLS connections, send one request on each, keep them open and
  idle; print `BENCH_JSON {"held": n, ...}`, then wait for stdin to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

# Percentiles reported for plots and estimates: every 1 % up to 99, then finer.
GRID = [float(p) for p in range(1, 100)] + [99.5, 99.9, 99.95, 99.99, 100.0]
CHUNK = 256 * 1024


def _ssl(spec: dict[str, Any]) -> ssl.SSLContext | bool:
    if not str(spec["url"]).startswith("https"):
        return False
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a benchmark of our own loopback servers
    return ctx


def percentiles(samples: list[float]) -> list[list[float]]:
    """(percentile, ms) on GRID, nearest rank."""
    if not samples:
        return []
    ordered = sorted(samples)
    n = len(ordered)
    return [[p, round(ordered[min(n - 1, max(0, int(p / 100 * n + 0.5) - 1))], 4)] for p in GRID]


def _headers(spec: dict[str, Any]) -> list[dict[str, str]]:
    base: dict[str, str] = dict(spec.get("headers") or {})
    tokens: list[str] = list(spec.get("tokens") or [])
    if not tokens:
        return [base]
    return [{**base, "Authorization": f"Bearer {token}"} for token in tokens]


class Recorder:
    def __init__(self) -> None:
        self.samples: dict[int, list[float]] = {}
        self.socket_errors = 0
        self.bytes = 0
        self.recording = False

    def add(self, status: int, ms: float, size: int) -> None:
        if self.recording:
            self.samples.setdefault(status, []).append(ms)
            self.bytes += size

    def error(self) -> None:
        if self.recording:
            self.socket_errors += 1

    def result(self, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
        every = [ms for found in self.samples.values() for ms in found]
        return {
            "duration_s": seconds,
            "responses": len(every),
            "bytes": self.bytes,
            "socket_errors": self.socket_errors,
            "statuses": {str(k): len(v) for k, v in sorted(self.samples.items())},
            "percentiles": percentiles(every),
            "by_status": {str(k): percentiles(v) for k, v in sorted(self.samples.items())},
            "mean_ms": round(sum(every) / len(every), 4) if every else 0.0,
            "max_ms": round(max(every), 4) if every else 0.0,
            **extra,
        }


async def _one(
    session: aiohttp.ClientSession,
    spec: dict[str, Any],
    headers: dict[str, str],
    rec: Recorder,
    started: float,
) -> None:
    body = spec.get("body") or None
    try:
        async with session.request(
            spec.get("method", "GET"), spec["url"], headers=headers, data=body
        ) as resp:
            data = await resp.read()
            rec.add(resp.status, (time.perf_counter() - started) * 1000, len(data))
    except (TimeoutError, aiohttp.ClientError, OSError):
        rec.error()


async def _closed_loop(
    session: aiohttp.ClientSession, spec: dict[str, Any], rec: Recorder, until: float, lane: int
) -> None:
    variants = _headers(spec)
    i = lane * max(1, len(variants) // max(1, int(spec["connections"])))
    while time.perf_counter() < until:
        i += 1
        await _one(session, spec, variants[i % len(variants)], rec, time.perf_counter())


async def _open_loop(
    session: aiohttp.ClientSession, spec: dict[str, Any], rec: Recorder, start: float, until: float
) -> dict[str, Any]:
    """Request i is due at start + i/rate; latency counts from then (coordinated omission)."""
    variants = _headers(spec)
    interval = 1.0 / float(spec["rate"])
    cap = max(1000, 20 * int(spec["connections"]))
    pending: set[asyncio.Task[None]] = set()
    dropped = 0
    i = 0
    due = start
    while due < until:
        now = time.perf_counter()
        while due <= now and due < until:
            if len(pending) >= cap:
                dropped += 1  # the server is this far behind: count it and move on
            else:
                task = asyncio.create_task(
                    _one(session, spec, variants[i % len(variants)], rec, due)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
            i += 1
            due = start + i * interval
        await asyncio.sleep(max(0.0, min(due, until) - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=30)
    return {"scheduled": i, "dropped": dropped}


def _session(spec: dict[str, Any], limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, ssl=_ssl(spec), force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=float(spec.get("timeout", 30)))
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


async def run_requests(spec: dict[str, Any]) -> dict[str, Any]:
    connections = int(spec["connections"])
    rec = Recorder()
    rate = float(spec.get("rate") or 0)
    async with _session(spec, connections) as session:
        warmup = float(spec.get("warmup") or 0)
        if warmup > 0:
            until = time.perf_counter() + warmup
            await asyncio.gather(
                *(_closed_loop(session, spec, rec, until, lane) for lane in range(connections))
            )
        rec.recording = True
        start = time.perf_counter()
        until = start + float(spec["duration"])
        extra: dict[str, Any] = {"mode": "open-loop" if rate > 0 else "closed-loop"}
        if rate > 0:
            extra.update(await _open_loop(session, spec, rec, start, until))
        else:
            await asyncio.gather(
                *(_closed_loop(session, spec, rec, until, lane) for lane in range(connections))
            )
        seconds = time.perf_counter() - start
        rec.recording = False
    return rec.result(seconds, extra)


async def _zeros(size: int) -> AsyncIterator[bytes]:
    block = bytes(CHUNK)
    left = size
    while left > 0:
        piece = block if left >= CHUNK else block[:left]
        left -= len(piece)
        yield piece


async def run_stream(spec: dict[str, Any]) -> dict[str, Any]:
    size = int(spec["size"])
    headers = _headers(spec)[0]
    received = 0
    async with _session(spec, 1) as session:
        start = time.perf_counter()
        if spec["mode"] == "download":
            async with session.get(spec["url"], headers=headers) as resp:
                status = resp.status
                async for chunk in resp.content.iter_any():
                    received += len(chunk)
            moved = received
        else:
            headers = {
                **headers,
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            }
            async with session.post(spec["url"], headers=headers, data=_zeros(size)) as resp:
                status = resp.status
                answer = await resp.read()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                received = int(json.loads(answer)["received"])
            moved = size
        seconds = time.perf_counter() - start
    ok = status == 200 and received == size
    return {
        "duration_s": seconds,
        "responses": 1,
        "bytes": moved,
        "socket_errors": 0,
        "statuses": {str(status): 1},
        "percentiles": [[p, round(seconds * 1000, 3)] for p in GRID],
        "by_status": {},
        "received": received,
        "complete": ok,
        "mb_per_s": round(moved / seconds / 1e6, 1) if seconds > 0 else 0.0,
    }


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """Hold `connections` idle keep-alive TLS connections, each after one request."""
    parts = urlsplit(spec["url"])
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = _ssl(spec)
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in _headers(spec)[0].items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    held: list[asyncio.StreamWriter] = []
    failed = 0
    gate = asyncio.Semaphore(int(spec.get("parallel", 200)))

    async def connect() -> None:
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        host, port, ssl=context or None, server_hostname=host if context else None
                    ),
                    timeout=60,
                )
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failed += 1
                held.append(writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(connect() for _ in range(int(spec["connections"]))))
    seconds = time.perf_counter() - start
    sys.stdout.write(
        "BENCH_JSON "
        + json.dumps({"held": len(held), "failed": failed, "connect_seconds": seconds})
        + "\n"
    )
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.read)  # until the harness closes our stdin
    for writer in held:
        writer.close()
    return {"held": len(held), "failed": failed, "connect_seconds": seconds, "closed": True}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0], encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    mode = spec.get("mode", "requests")
    if mode == "idle":
        result = asyncio.run(run_idle(spec))  # plain asyncio: lighter per connection
    else:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency of edgeauth
            result = asyncio.run(run_requests(spec) if mode == "requests" else run_stream(spec))
        else:
            coro = run_requests(spec) if mode == "requests" else run_stream(spec)
            result = uvloop.run(coro)
    sys.stdout.write("BENCH_JSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
