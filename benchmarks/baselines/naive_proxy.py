"""The aiohttp proxy anyone would write in an afternoon: the Python peer edgeauth must beat.

One ClientSession, a dict lookup of the bearer token, iter_chunked, TLS, uvloop (the same loop
as edgeauth, so the comparison is about the proxy code). `python -m
benchmarks.baselines.naive_proxy --port P --upstream http://127.0.0.1:B --tokens FILE
--cert C --key K`; every path is forwarded as is, with a known bearer token.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
TOKENS = web.AppKey("tokens", dict[str, str])
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def proxy(request: web.Request) -> web.StreamResponse:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in request.app[TOKENS]:
        return web.json_response({"message": "Unauthorized"}, status=401)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    headers.pop("Authorization", None)
    data = request.content if request.can_read_body else None
    url = request.app[UPSTREAM] + request.path_qs
    session = request.app[SESSION]
    async with session.request(request.method, url, headers=headers, data=data) as upstream:
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        resp = web.StreamResponse(status=upstream.status, headers=kept)
        await resp.prepare(request)
        async for chunk in upstream.content.iter_chunked(65536):
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def session_context(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[SESSION] = session
        yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="naive aiohttp reverse proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    app = web.Application(client_max_size=0)
    app[TOKENS] = {t: "bench" for t in args.tokens.read_text().split()}
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", proxy)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    loop = uvloop.new_event_loop()
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        ssl_context=context,
        access_log=None,
        print=None,
        loop=loop,
    )


if __name__ == "__main__":
    main()
