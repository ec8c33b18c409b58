"""Entities declared in config.toml (tagged MANAGED_TAG) are config's (issue 14, item 3): the
admin API refuses to change or delete them, with a 409 that says where to change them, and
never sets or removes the tag itself. Set up through the store, as the seed does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgeauth import crypto
from edgeauth.models import MANAGED_TAG, ClientType
from edgeauth.store.base import NewCredential
from tests.admin.conftest import AdminWorld, create_by_api, schema_violation
from tests.conftest import Backend, GatewayFactory
from tests.oauth.conftest import consumers, events_service

SECRET = "declared-secret"
CONSUMER_409 = {
    "message": "consumer 'Declared' is managed by config.toml: change it there and reload"
}
APP_409 = {
    "message": "application 'declared' is managed by config.toml: change it there and reload"
}
TAG_REFUSED = f"'{MANAGED_TAG}' is set by config.toml only"


@pytest.fixture
async def world(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> AsyncIterator[AdminWorld]:
    """The admin world plus Declared and its application, both tagged as the seed tags."""
    gw = await gateway([events_service(backend)])
    store = gw.gateway.c.store
    assert store is not None
    owner = await store.create_consumer("Declared", "decl-1", ("team-a", MANAGED_TAG))
    await store.create_credential(
        NewCredential(
            consumer_id=owner.id,
            name="DeclaredApp",
            client_id="declared",
            secret_hash=crypto.hash_secret(SECRET),
            redirect_uris=("https://declared.example/cb",),
            client_type=ClientType.CONFIDENTIAL,
            tags=(MANAGED_TAG,),
        )
    )
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        admin_world = AdminWorld(gw, backend, http, client)
        await create_by_api(admin_world, consumers(tmp_path))
        yield admin_world


async def _snapshot(world: AdminWorld) -> list[Any]:
    paths = ("/consumers", "/oauth2", "/oauth2_tokens")
    return [(await world.admin("GET", f"{path}?size=1000")).body for path in paths]


async def test_a_managed_consumer_cannot_be_changed_or_deleted(world: AdminWorld) -> None:
    token = (await world.password_token("declared", SECRET))["access_token"]
    before = await _snapshot(world)
    [consumer_id] = [c["id"] for c in before[0]["data"] if c["username"] == "Declared"]
    for method, path, body in (
        ("PATCH", "/consumers/Declared", {"custom_id": "other"}),
        ("PATCH", f"/consumers/{consumer_id}", {"tags": ["team-a", MANAGED_TAG, "b"]}),
        ("PUT", "/consumers/Declared", {"custom_id": "decl-1"}),
        ("PUT", f"/default/consumers/{consumer_id}", {"username": "Renamed"}),
        ("DELETE", "/consumers/Declared", None),
        ("DELETE", f"/default/consumers/{consumer_id}", None),
    ):
        reply = await world.admin(method, path, json=body)
        assert (reply.status, reply.body) == (409, CONSUMER_409), (method, path)
    assert await _snapshot(world) == before
    assert (await world.proxied(token)).status == 200


async def test_a_managed_application_cannot_be_changed_or_deleted(world: AdminWorld) -> None:
    token = (await world.password_token("declared", SECRET))["access_token"]
    before = await _snapshot(world)
    [app_id] = [a["id"] for a in before[1]["data"] if a["client_id"] == "declared"]
    for method, path, body in (
        ("PATCH", "/oauth2/declared", {"name": "Other"}),
        ("PATCH", f"/consumers/Declared/oauth2/{app_id}", {"client_secret": "stolen"}),
        ("PUT", "/consumers/Declared/oauth2/declared", {"name": "DeclaredApp"}),
        ("PUT", f"/consumers/Declared/oauth2/{app_id}", {"name": "DeclaredApp"}),
        ("DELETE", "/oauth2/declared", None),
        ("DELETE", f"/consumers/Declared/oauth2/{app_id}", None),
        ("DELETE", f"/default/oauth2/{app_id}", None),
    ):
        reply = await world.admin(method, path, json=body)
        assert (reply.status, reply.body) == (409, APP_409), (method, path)
    assert await _snapshot(world) == before
    assert (await world.proxied(token)).status == 200
    assert (await world.password_token("declared", SECRET))["access_token"]


async def test_an_application_added_under_a_managed_consumer_is_the_admin_apis(
    world: AdminWorld,
) -> None:
    """Allowed: it is untagged (a reload leaves it alone) and gives the admin API no power it
    lacks; it can be changed and deleted like any other."""
    made = await world.admin("POST", "/consumers/Declared/oauth2", json={"name": "Extra"})
    assert made.status == 201, made.text
    assert made.body["tags"] is None
    path = f"/consumers/Declared/oauth2/{made.body['id']}"
    assert (await world.admin("PATCH", path, json={"name": "Extra2"})).status == 200
    assert (await world.admin("DELETE", path)).status == 204
    # Tokens of a managed application are the admin API's to mint and revoke.
    minted = await world.admin(
        "POST", "/oauth2_tokens", json={"credential": "declared", "expires_in": 60}
    )
    assert minted.status == 201, minted.text
    revoked = await world.admin("DELETE", "/oauth2_tokens?consumer=Declared")
    assert revoked.body == {"revoked": 1}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/consumers", {"username": "sneaky", "tags": ["a", MANAGED_TAG]}),
        ("PUT", "/consumers/sneaky", {"tags": ["a", MANAGED_TAG]}),
        ("PATCH", "/consumers/Other", {"tags": ["a", MANAGED_TAG]}),
        ("PUT", "/consumers/Other", {"tags": ["a", MANAGED_TAG]}),
        ("POST", "/consumers/Other/oauth2", {"name": "S", "tags": ["a", MANAGED_TAG]}),
        ("PUT", "/consumers/Other/oauth2/sneaky", {"name": "S", "tags": ["a", MANAGED_TAG]}),
        ("PATCH", "/oauth2/otherclient", {"tags": ["a", MANAGED_TAG]}),
    ],
)
async def test_the_admin_api_never_sets_the_managed_tag(
    world: AdminWorld, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await _snapshot(world)
    reply = await world.admin(method, path, json=body)
    assert reply.status == 400
    schema_violation(reply.body, {"tags": [None, TAG_REFUSED]})
    assert await _snapshot(world) == before
