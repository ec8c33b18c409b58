"""Health behind the admin token: `/status`, `/status/ready`, `/metrics`. What one worker knows;
the unauthenticated status listener for load balancers is edgeauth/status.py."""

from __future__ import annotations

import os

from aiohttp import web

from edgeauth import __version__
from edgeauth.admin.http import ctx, json
from edgeauth.metrics import scrape


async def status(request: web.Request) -> web.Response:
    c = ctx(request)
    reachable = await c.store.ping()
    return json(
        {
            "version": __version__,
            "worker": os.getpid(),
            "workers": c.settings.server.workers,
            "uptime_seconds": round(c.clock() - c.started, 3),
            "config_loaded_at": int(c.started),
            "database": {"reachable": reachable, "backend": c.settings.store.backend},
            **c.stats(),
        }
    )


async def ready(request: web.Request) -> web.Response:
    reachable = await ctx(request).store.ping()
    return json({"ready": reachable}, 200 if reachable else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text for every worker and the supervisor, plus what this worker checks."""
    c = ctx(request)
    if not c.settings.metrics.enabled:
        return json({"message": "Not found"}, 404)
    body = await scrape(c.settings.server.tls_cert_file, await c.store.ping())
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
