"""A small IRIS-like REST backend for `make run`, the tests and the benchmarks.

It is deliberately unauthenticated, like the IRIS web applications edgeauth guards, and it
reports what it received (method, path, query, headers, body digest) so that tests can see
exactly what the gateway forwarded. Cancelled requests are counted so that tests can prove
the gateway propagates a client's abort upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
_ZEROS = bytes(CHUNK)

EVENTS = [
    {"id": 1, "name": "Global Summit", "date": "2026-05-04"},
    {"id": 2, "name": "Developer Day", "date": "2026-09-17"},
    {"id": 3, "name": "Data Platform Workshop", "date": "2026-11-02"},
]

STATS = web.AppKey("stats", dict[str, int])


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def events(request: web.Request) -> web.Response:
    return _json(EVENTS)


async def event(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    for item in EVENTS:
        if str(item["id"]) == wanted:
            return _json(item)
    return _json({"message": "not found"}, status=404)


async def echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return _json(
        {
            "method": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "query": request.raw_path.partition("?")[2],
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
    )


async def stream_bytes(request: web.Request) -> web.StreamResponse:
    total = int(request.match_info["n"])
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = total
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp
    left = total
    while left > 0:
        piece = _ZEROS if left >= CHUNK else _ZEROS[:left]
        await resp.write(piece)
        left -= len(piece)
    await resp.write_eof()
    return resp


async def sink(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return _json({"received": size})


async def slow(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    stats["slow_started"] += 1
    try:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    except asyncio.CancelledError:
        stats["slow_cancelled"] += 1
        raise
    stats["slow_finished"] += 1
    return _json({"slept_ms": int(request.match_info["ms"])})


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return _json({"status": code}, status=code)


async def stats(request: web.Request) -> web.Response:
    return _json(request.app[STATS])


def make_app() -> web.Application:
    """The backend app; `app[STATS]` counts slow requests started, finished and cancelled.

    Serve it with `handler_cancellation=True` so that a dropped client cancels the handler.
    """
    app = web.Application()
    app[STATS] = {"slow_started": 0, "slow_finished": 0, "slow_cancelled": 0}
    # /echo under any prefix, so that a test can see what any route forwards
    app.router.add_route("*", "/{head:.*}/echo", echo)
    for prefix in ("", "/api"):
        app.router.add_route("*", f"{prefix}/events/echo", echo)
        app.router.add_get(f"{prefix}/events", events)
        app.router.add_get(f"{prefix}/events/{{id}}", event)
    # The tools also under /tools, a base path of their own for a public service (config.toml)
    for prefix in ("", "/api", "/tools"):
        app.router.add_route("*", f"{prefix}/echo", echo)
        app.router.add_route("*", f"{prefix}/echo/{{tail:.*}}", echo)
        app.router.add_get(f"{prefix}/bytes/{{n:\\d+}}", stream_bytes)
        app.router.add_post(f"{prefix}/sink", sink)
        app.router.add_put(f"{prefix}/sink", sink)
        app.router.add_get(f"{prefix}/slow/{{ms:\\d+}}", slow)
        app.router.add_route("*", f"{prefix}/status/{{code:[1-5]\\d\\d}}", status)
    app.router.add_get("/_stats", stats)
    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m edgeauth.sample_backend --port 52773`."""
    parser = argparse.ArgumentParser(description="edgeauth sample IRIS-like backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=52773)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda msg: log.info("sample backend on http://%s:%d", args.host, args.port),
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
