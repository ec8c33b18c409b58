"""Health (design §6): `/status`, `/status/ready`, `/metrics`. The configuration views
(`/services`, `/routes`, `/plugins`, `/`) are tested in test_declared.py."""

from __future__ import annotations

import asyncio
import os
import re

from edgeauth import __version__
from tests.admin.conftest import AdminWorld
from tests.oauth.conftest import SECRET


async def test_status(admin_world: AdminWorld) -> None:
    reply = await admin_world.admin("GET", "/status")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.body
    assert {
        "version",
        "uptime_seconds",
        "database",
        "connections",
        "token_cache_entries",
    } <= set(body)
    assert body["version"] == __version__
    assert isinstance(body["uptime_seconds"], int | float)
    assert body["uptime_seconds"] >= 0
    assert body["database"] == {"reachable": True, "backend": "sqlite"}
    assert body["worker"] == os.getpid()  # the in-process gateway
    assert isinstance(body["connections"], int)
    assert body["token_cache_entries"] == 0

    issued = await admin_world.password_token("clientid", SECRET)
    assert (await admin_world.proxied(issued["access_token"])).status == 200
    again = await admin_world.admin("GET", "/default/status")
    assert again.status == 200
    assert again.body["token_cache_entries"] == 1
    assert again.body["connections"] >= 1  # the proxy client's keep-alive connection
    assert again.body["uptime_seconds"] >= body["uptime_seconds"]


async def test_ready(admin_world: AdminWorld) -> None:
    for path in ("/status/ready", "/default/status/ready"):
        reply = await admin_world.admin("GET", path)
        assert reply.status == 200
        assert reply.body == {"ready": True}


async def test_metrics_are_prometheus_text(admin_world: AdminWorld) -> None:
    issued = await admin_world.password_token("clientid", SECRET)
    assert (await admin_world.proxied(issued["access_token"])).status == 200
    reply = await admin_world.admin("GET", "/metrics")
    lines = reply.text.splitlines()
    for _ in range(30):  # gauges are refreshed every second
        reply = await admin_world.admin("GET", "/metrics")
        assert reply.status == 200
        lines = reply.text.splitlines()
        if "edgeauth_token_cache_entries 1.0" in lines:
            break
        await asyncio.sleep(0.1)
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert "edgeauth_datastore_reachable 1" in lines
    assert "# TYPE edgeauth_datastore_reachable gauge" in lines
    assert "edgeauth_token_cache_entries 1.0" in lines
    assert any(line.startswith("edgeauth_http_requests_total{") for line in lines)
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.eE+-]+$")
    for line in lines:
        assert line.startswith("# ") or sample.match(line), line
    assert issued["access_token"] not in reply.text
    assert reply.text.endswith("\n")
    default = await admin_world.admin("GET", "/default/metrics")
    assert default.status == 200
    assert "edgeauth_datastore_reachable 1" in default.text.splitlines()


async def test_ready_is_503_and_metrics_say_unreachable_while_the_store_is_down(
    admin_world: AdminWorld,
) -> None:
    store = admin_world.gw.gateway.c.store
    assert store is not None
    await store.close()
    ready = await admin_world.admin("GET", "/status/ready")
    assert ready.status == 503
    assert ready.body == {"ready": False}
    status = await admin_world.admin("GET", "/status")
    assert status.body["database"]["reachable"] is False
    metrics = await admin_world.admin("GET", "/metrics")
    assert "edgeauth_datastore_reachable 0" in metrics.text.splitlines()
