"""Health and the configuration views: `/status`, `/status/ready`, `/services`, `/routes`,
`/metrics`. What one worker knows; cluster-wide figures come with the operations work."""

from __future__ import annotations

import os
import time

from aiohttp import web

from edgeauth import __version__
from edgeauth.admin import views
from edgeauth.admin.http import ctx, json


async def status(request: web.Request) -> web.Response:
    c = ctx(request)
    reachable = await c.store.ping()
    return json(
        {
            "version": __version__,
            "worker": os.getpid(),
            "uptime_seconds": round(time.time() - c.started, 3),
            "config_loaded_at": int(c.started),
            "database": {"reachable": reachable, "backend": c.settings.store.backend},
            **c.stats(),
        }
    )


async def ready(request: web.Request) -> web.Response:
    reachable = await ctx(request).store.ping()
    return json({"ready": reachable}, 200 if reachable else 503)


async def services(request: web.Request) -> web.Response:
    return json(views.services(ctx(request).settings.services))


async def routes(request: web.Request) -> web.Response:
    return json(views.routes(ctx(request).settings.services))


async def metrics(request: web.Request) -> web.Response:
    c = ctx(request)
    stats = c.stats()
    lines = [
        "# HELP edgeauth_datastore_reachable Whether the store answers (1) or not (0).",
        "# TYPE edgeauth_datastore_reachable gauge",
        f"edgeauth_datastore_reachable {int(await c.store.ping())}",
        "# HELP edgeauth_token_cache_entries Validated tokens cached by this worker.",
        "# TYPE edgeauth_token_cache_entries gauge",
        f"edgeauth_token_cache_entries {stats.get('token_cache_entries', 0)}",
        "# HELP edgeauth_connections Open downstream connections of this worker.",
        "# TYPE edgeauth_connections gauge",
        f"edgeauth_connections {stats.get('connections', 0)}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
