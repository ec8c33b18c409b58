"""Health: `/status`, `/status/ready`, `/metrics`. What one worker knows; cluster-wide figures
come with the operations work."""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

from edgeauth import __version__, tls
from edgeauth.admin.http import ctx, json
from edgeauth.metrics import exposition


async def status(request: web.Request) -> web.Response:
    c = ctx(request)
    reachable = await c.store.ping()
    return json(
        {
            "version": __version__,
            "worker": os.getpid(),
            "workers": c.settings.server.workers,
            "uptime_seconds": round(time.time() - c.started, 3),
            "config_loaded_at": int(c.started),
            "database": {"reachable": reachable, "backend": c.settings.store.backend},
            **c.stats(),
        }
    )


async def ready(request: web.Request) -> web.Response:
    reachable = await ctx(request).store.ping()
    return json({"ready": reachable}, 200 if reachable else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text for every worker, plus what the answering worker checks itself."""
    c = ctx(request)
    if not c.settings.metrics.enabled:
        return json({"message": "Not found"}, 404)
    expiry = tls.expires_at(c.settings.server.tls_cert_file)
    extra = [
        "# HELP edgeauth_datastore_reachable Whether the store answers (1) or not (0).",
        "# TYPE edgeauth_datastore_reachable gauge",
        f"edgeauth_datastore_reachable {int(await c.store.ping())}",
        "# HELP edgeauth_tls_cert_expiry_timestamp_seconds End of the listener certificate.",
        "# TYPE edgeauth_tls_cert_expiry_timestamp_seconds gauge",
        f"edgeauth_tls_cert_expiry_timestamp_seconds {int(expiry)}",
    ]
    body = await asyncio.to_thread(exposition, extra)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
