"""The admin API's world: the walkthrough's gateway (events service, ClientApp, Other) with
its admin listener, a plain-HTTP admin client carrying the admin token, and the HTTPS client
for the proxy listener. ClientApp and Other are made through the admin API, not declared in
config.toml: the tests change and delete them, which the admin API refuses for what config
declares (test_managed.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import PROVISION_KEY, consumers, events_service

NOT_FOUND = {"message": "Not found"}
UNAUTHORIZED = {"message": "Invalid authentication credentials"}
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
CONSUMER_KEYS = {"id", "username", "custom_id", "tags", "created_at", "type"}
CREDENTIAL_KEYS = {
    "id",
    "name",
    "client_id",
    "hash_secret",
    "redirect_uris",
    "client_type",
    "consumer",
    "tags",
    "created_at",
}


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    text: str


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Reply:
    """One request; the body is parsed as JSON when the response says it is JSON."""
    async with session.request(method, url, **kwargs) as resp:
        raw = await resp.read()
        text = raw.decode("utf-8", "replace")
        body: Any = text
        if resp.content_type == "application/json" and raw:
            body = orjson.loads(raw)
        return Reply(resp.status, body, resp.headers, text)


def schema_violation(body: Any, fields: dict[str, Any]) -> None:
    """Kong's schema-violation body with exactly these fields."""
    assert isinstance(body, dict)
    assert set(body) == {"code", "name", "message", "fields"}
    assert body["code"] == 2
    assert body["name"] == "schema violation"
    assert body["fields"] == fields
    assert isinstance(body["message"], str)
    for name in fields:
        assert name in body["message"]


def unique_violation(body: Any, field: str, value: str) -> None:
    """Kong's unique-violation body for one field."""
    assert body == {
        "code": 5,
        "name": "unique constraint violation",
        "message": f"UNIQUE violation detected on '{{{field}=\"{value}\"}}'",
        "fields": {field: value},
    }


@dataclass
class AdminWorld:
    gw: RunningGateway
    backend: Backend
    http: aiohttp.ClientSession  # plain HTTP to the admin listener, admin token attached
    proxy: aiohttp.ClientSession  # HTTPS to the proxy listener, trusting the test CA

    @property
    def token_url(self) -> str:
        return f"{self.gw.url}/events/oauth2/token"

    @property
    def echo_url(self) -> str:
        return f"{self.gw.url}/events/echo"

    async def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await call(self.http, method, self.gw.admin_url + path, **kwargs)

    async def password_token(
        self, client_id: str, secret: str, userid: str = "1", scope: str | None = None
    ) -> dict[str, Any]:
        """A password-grant token for `client_id` from the events service's token endpoint."""
        body = {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": userid,
        }
        if scope is not None:
            body["scope"] = scope
        reply = await call(self.proxy, "POST", self.token_url, json=body)
        assert reply.status == 200, reply.text
        assert isinstance(reply.body, dict)
        return reply.body

    async def proxied(self, access_token: str) -> Reply:
        """A bearer call through the proxy to the backend's echo endpoint."""
        headers = {"Authorization": f"Bearer {access_token}"}
        return await call(self.proxy, "GET", self.echo_url, headers=headers)


def upstream_headers(reply: Reply) -> dict[str, str]:
    """The request headers the backend saw, lower-cased names."""
    assert reply.status == 200, reply.text
    pairs = reply.body["headers"]
    return {str(name).lower(): str(value) for name, value in pairs}


def _admin_bodies(seed: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Any]]]:
    """A `[[consumers]]` list as admin API bodies: each consumer with its applications (a
    secret file read into client_secret)."""
    bodies = []
    for declared in seed:
        consumer = {k: v for k, v in declared.items() if k != "oauth2"}
        apps = []
        for app in declared.get("oauth2", []):
            body = dict(app)
            secret_file = body.pop("client_secret_file", None)
            if secret_file is not None:
                body["client_secret"] = Path(secret_file).read_text().strip()
            apps.append(body)
        bodies.append((consumer, apps))
    return bodies


async def create_by_api(world: AdminWorld, seed: list[dict[str, Any]]) -> None:
    """Make the consumers and applications of a `[[consumers]]` list through the admin API."""
    for consumer, apps in _admin_bodies(seed):
        made = await world.admin("POST", "/consumers", json=consumer)
        assert made.status == 201, made.text
        for app in apps:
            path = f"/consumers/{consumer['username']}/oauth2"
            reply = await world.admin("POST", path, json=app)
            assert reply.status == 201, reply.text


@pytest.fixture
async def admin_world(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
) -> AsyncIterator[AdminWorld]:
    gw = await gateway([events_service(backend)])
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        world = AdminWorld(gw, backend, http, client)
        await create_by_api(world, consumers(tmp_path))
        yield world
