"""What config.toml declares, through the admin API (issue 14): services, routes and oauth2
plugins in Kong's shapes, `GET /`, writes refused with how to make them, and `POST /config`.

Reads and refusals use the in-process gateway (its admin listener is real); POST /config that
writes and reloads runs a real `edgeauth serve`.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import stat
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomli_w

from edgeauth import __version__, tls
from tests.admin.conftest import NOT_FOUND, Reply, call
from tests.conftest import (
    Backend,
    GatewayFactory,
    RunningGateway,
    ServeProcess,
    service,
    write_config,
)
from tests.oauth.conftest import PROVISION_KEY, events_service

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class World:
    gw: RunningGateway
    backend: Backend
    http: aiohttp.ClientSession

    async def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await call(self.http, method, self.gw.admin_url + path, **kwargs)

    @property
    def config(self) -> Path:
        return self.gw.settings.source


@pytest.fixture
async def world(backend: Backend, gateway: GatewayFactory) -> AsyncIterator[World]:
    """A protected service (events) and a public one (tools)."""
    tools = service("tools", backend.url + "/tools", ["/tools"], methods=["GET"])
    gw = await gateway(
        [events_service(backend), tools], tables={"admin": {"allow_config_post": True}}
    )
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        yield World(gw, backend, http)


def events_json(world: World) -> dict[str, Any]:
    return {
        "id": "events",
        "name": "events",
        "url": world.backend.url + "/api",
        "protocol": "http",
        "host": "127.0.0.1",
        "port": world.backend.port,
        "path": "/api",
        "protected": True,
        "connect_timeout": 5000,
        "read_timeout": 60000,
        "retries": 2,
        "tls_verify": True,
        "enabled": True,
        "tags": None,
    }


EVENTS_ROUTE = {
    "id": "events-route",
    "name": "events-route",
    "paths": ["/events"],
    "hosts": None,
    "methods": None,
    "strip_path": False,
    "preserve_host": False,
    "protocols": ["https"],
    "required_scopes": None,
    "service": {"id": "events"},
    "tags": None,
}
TOOLS_ROUTE = {
    **EVENTS_ROUTE,
    "id": "tools-route",
    "name": "tools-route",
    "paths": ["/tools"],
    "methods": ["GET"],
    "strip_path": True,
    "service": {"id": "tools"},
}


# reads ----------------------------------------------------------------------------------------
async def test_root_answers_in_kongs_shape_without_secrets(world: World) -> None:
    """decK, Konga and scripts probe `GET /` first."""
    reply = await world.admin("GET", "/")
    assert reply.status == 200
    body = reply.body
    assert body["version"] == __version__
    assert body["hostname"] == socket.gethostname()
    assert str(uuid.UUID(body["node_id"])) == body["node_id"]
    assert body["plugins"] == {
        "available_on_server": {"oauth2": {"version": __version__, "priority": 1004}},
        "enabled_in_cluster": ["oauth2"],
    }
    assert body["configuration"]["database"] == "sqlite"
    assert body["configuration"]["declarative_config"] == str(world.config)
    assert body["configuration"]["proxy_listen"] == ["127.0.0.1:0 ssl"]
    again = await world.admin("GET", "/default/")
    assert again.body["node_id"] == body["node_id"]  # stable, as Kong's node id is
    assert PROVISION_KEY not in reply.text
    assert world.gw.admin_token not in reply.text


async def test_services_in_kongs_shape_by_list_and_by_name(world: World) -> None:
    listed = await world.admin("GET", "/services")
    assert listed.status == 200
    assert listed.body["next"] is None
    assert [s["name"] for s in listed.body["data"]] == ["events", "tools"]
    assert listed.body["data"][0] == events_json(world)
    assert listed.body["data"][1]["protected"] is False
    for path in ("/services/events", "/default/services/events"):
        one = await world.admin("GET", path)
        assert (one.status, one.body) == (200, events_json(world))
    missing = await world.admin("GET", "/services/nope")
    assert (missing.status, missing.body) == (404, NOT_FOUND)


async def test_routes_by_list_by_service_and_by_name(world: World) -> None:
    listed = await world.admin("GET", "/routes")
    assert (listed.status, listed.body) == (
        200,
        {"data": [EVENTS_ROUTE, TOOLS_ROUTE], "next": None},
    )
    of_tools = await world.admin("GET", "/services/tools/routes")
    assert of_tools.body == {"data": [TOOLS_ROUTE], "next": None}
    one = await world.admin("GET", "/default/routes/events-route")
    assert (one.status, one.body) == (200, EVENTS_ROUTE)
    for path in ("/routes/nope", "/services/nope/routes"):
        missing = await world.admin("GET", path)
        assert (missing.status, missing.body) == (404, NOT_FOUND)


async def test_plugins_show_each_protected_service_oauth2_with_the_key_redacted(
    world: World,
) -> None:
    listed = await world.admin("GET", "/plugins")
    assert listed.status == 200
    (plugin,) = listed.body["data"]  # tools is public: no plugin
    assert {k: v for k, v in plugin.items() if k != "config"} == {
        "id": plugin["id"],
        "name": "oauth2",
        "service": {"id": "events"},
        "route": None,
        "consumer": None,
        "enabled": True,
        "protocols": ["https"],
        "tags": None,
    }
    assert str(uuid.UUID(plugin["id"])) == plugin["id"]
    config = plugin["config"]
    assert config["provision_key"] == "<redacted>"
    assert config["scopes"] == ["read", "write"]
    assert (config["enable_password_grant"], config["enable_implicit_grant"]) == (True, False)
    assert (config["token_expiration"], config["pkce"]) == (7200, "lax")
    assert PROVISION_KEY not in listed.text
    one = await world.admin("GET", f"/plugins/{plugin['id']}")
    assert (one.status, one.body) == (200, plugin)
    of_events = await world.admin("GET", "/services/events/plugins")
    assert of_events.body == {"data": [plugin], "next": None}
    of_tools = await world.admin("GET", "/services/tools/plugins")
    assert of_tools.body == {"data": [], "next": None}
    missing = await world.admin("GET", f"/plugins/{uuid.uuid4()}")
    assert (missing.status, missing.body) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    "path",
    [
        "/services",
        "/services/events",
        "/services/events/routes",
        "/services/events/plugins",
        "/routes",
        "/routes/events-route",
        "/plugins",
        "/default/plugins/x",
    ],
)
async def test_writes_to_what_config_declares_are_405_saying_how(world: World, path: str) -> None:
    for method in WRITES:
        reply = await world.admin(method, path, json={"name": "x", "url": "http://x.example"})
        assert reply.status == 405, (method, reply.text)
        assert reply.headers["Allow"] == "GET"
        message = reply.body["message"]
        assert str(world.config) in message
        assert "systemctl reload edgeauth" in message
        assert "SIGHUP" in message
        assert "POST /config" in message
    services = await world.admin("GET", "/services")
    assert [s["name"] for s in services.body["data"]] == ["events", "tools"]


# POST /config, refused ----------------------------------------------------------------------
def _text(config: Path, change: Callable[[dict[str, Any]], None]) -> str:
    doc = tomllib.loads(config.read_text())
    change(doc)
    return tomli_w.dumps(doc)


async def test_post_config_reports_every_problem_at_once_and_writes_nothing(
    world: World,
) -> None:
    before = world.config.read_bytes()

    def broken(doc: dict[str, Any]) -> None:
        doc["server"].update(workerz=2, handshake_timeout_seconds=-1, listen="127.0.0.1:1")
        doc["services"][0]["routes"][0]["paths"] = ["events"]

    reply = await world.admin("POST", "/config", data=_text(world.config, broken))
    assert reply.status == 400
    assert reply.body["code"] == 14
    assert reply.body["name"] == "invalid declarative configuration"
    problems = reply.body["problems"]
    assert len(problems) == 3
    assert any("server.workerz" in p and 'did you mean "workers"' in p for p in problems)
    assert any("server.handshake_timeout_seconds" in p for p in problems)
    assert any("services[0].routes[0].paths[0]" in p for p in problems)
    assert "3 problems" in reply.body["message"]

    def moved(doc: dict[str, Any]) -> None:
        doc["server"]["listen"] = "127.0.0.1:1"

    reply = await world.admin("POST", "/config", data=_text(world.config, moved))
    assert reply.status == 400
    (problem,) = reply.body["problems"]
    assert "server.listen" in problem
    assert "restart" in problem
    for body, expected in ((b"[server\n", "TOML syntax error"), (b"\xff\xfe", "TOML syntax")):
        reply = await world.admin("POST", "/config", data=body)
        assert reply.status == 400
        assert expected in reply.body["problems"][0]
    empty = await world.admin("POST", "/config", data=b"\n")
    assert empty.status == 400
    assert "--data-binary" in empty.body["message"]
    huge = await world.admin("POST", "/config", data=io.BytesIO(b"#" * (1024 * 1024 + 1)))
    assert huge.status == 413
    assert world.config.read_bytes() == before


async def test_post_config_is_off_unless_config_allows_it(
    backend: Backend, gateway: GatewayFactory
) -> None:
    """Secure by default: the admin token alone does not let anyone rewrite config.toml."""
    gw = await gateway([service("tools", backend.url, ["/tools"])])
    before = gw.settings.source.read_bytes()
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        reply = await call(http, "POST", f"{gw.admin_url}/config", data=before + b"# x\n")
    assert reply.status == 403, reply.text
    assert "allow_config_post = true" in reply.body["message"]
    assert gw.settings.source.read_bytes() == before


async def test_post_config_without_a_supervisor_writes_nothing(world: World) -> None:
    """The in-process gateway has no supervisor: a valid file would never be applied."""
    before = world.config.read_bytes()
    reply = await world.admin("POST", "/config", data=before)
    assert reply.status == 503
    assert "nothing was written" in reply.body["message"]
    assert world.config.read_bytes() == before


# POST /config, applied ----------------------------------------------------------------------
async def test_post_config_writes_the_file_whole_and_reloads(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client: aiohttp.ClientSession,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", backend.url, ["/tools"])],
        tables={"admin": {"allow_config_post": True}},
    )
    os.chmod(config, 0o640)
    gw = serve(config)
    admin = next(e for e in gw.log if e.get("msg") == "ready")["admin"][0]
    token = (tmp_path / "admin.token").read_text().strip()

    def added(doc: dict[str, Any]) -> None:
        doc["services"][0]["routes"].append({"name": "new-route", "paths": ["/new"]})

    new = _text(config, added)
    async with aiohttp.ClientSession(headers={"Kong-Admin-Token": token}) as http:
        reply = await call(http, "POST", f"{admin}/config", data=new)
        assert reply.status == 201, reply.text
        assert reply.body["config_file"] == str(config)
        assert config.read_text() == new
        assert stat.S_IMODE(config.stat().st_mode) == 0o640
        assert [n for n in os.listdir(tmp_path) if n.startswith(".config.toml")] == []
        names: list[str] = []
        for _ in range(100):
            routes = await call(http, "GET", f"{admin}/routes")
            names = [r["name"] for r in routes.body["data"]]
            if "new-route" in names:
                break
            await asyncio.sleep(0.1)
        assert names == ["tools-route", "new-route"]
    async with client.get(f"{gw.url}/new/echo") as resp:
        assert resp.status == 200
    messages = [e.get("msg") for e in gw.log]
    assert "admin API wrote a new config file; reloading" in messages
    assert "configuration reloaded" in messages
