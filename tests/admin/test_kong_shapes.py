"""Kong-shaped writes keep Kong's data (issue 14): ids and creation times given on create are
kept, so a migration's references (a token's credential, a credential's consumer) still hold;
a Kong secret hash comes in as `client_secret_hash`, stored as it is; and a body's problems
are reported all at once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.admin.conftest import AdminWorld, call, schema_violation, unique_violation
from tests.oauth.conftest import KONG_HASH, KONG_SECRET, PROVISION_KEY

CONSUMER_ID = "4e7b5c6a-1f2d-4c3b-9a8e-7d6c5b4a3f21"
APP_ID = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
TOKEN_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
KONG_TOKEN = "kong-access-token-0123456789abcdefghijklmn"
ENTITY_RULE = ["at least one of these fields must be non-empty: 'custom_id', 'username'"]
PHC_FORMAT = "expected a PBKDF2-SHA512 hash in Kong's format: $pbkdf2-sha512$i=N,l=N$salt$hash"


async def _ok(world: AdminWorld, method: str, path: str, body: Any = None) -> Any:
    reply = await world.admin(method, path, json=body)
    assert reply.status in (200, 201), reply.text
    return reply.body


async def _grant(world: AdminWorld, client_id: str, secret: str) -> Any:
    body = {
        "grant_type": "password",
        "client_id": client_id,
        "client_secret": secret,
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "kong-user-1",
    }
    return await call(world.proxy, "POST", world.token_url, json=body)


async def _import_kong_consumer(world: AdminWorld) -> None:
    """Kong's consumer, its oauth2 credential (hashed secret) and a live token."""
    consumer = {"id": CONSUMER_ID.upper(), "created_at": 1_600_000_000, "username": "kong-co"}
    made = await _ok(world, "POST", "/consumers", consumer)
    assert (made["id"], made["created_at"]) == (CONSUMER_ID, 1_600_000_000)
    app = {
        "id": APP_ID,
        "created_at": 1_600_000_100,
        "name": "KongApp",
        "client_id": "kong-app",
        "client_secret_hash": KONG_HASH,
        "hash_secret": True,
        "redirect_uris": ["https://kong.example/cb"],
    }
    made = await _ok(world, "POST", f"/consumers/{CONSUMER_ID}/oauth2", app)
    assert (made["id"], made["created_at"]) == (APP_ID, 1_600_000_100)
    assert made["consumer"] == {"id": CONSUMER_ID}
    assert "client_secret" not in made  # nothing in clear to show
    token = {
        "id": TOKEN_ID,
        "credential": {"id": APP_ID},
        "service": {"id": "events"},
        "access_token": KONG_TOKEN,
        "token_type": "bearer",
        "expires_in": 3600,
        "created_at": int(time.time()) - 60,
        "authenticated_userid": "kong-user-1",
    }
    made = await _ok(world, "POST", "/oauth2_tokens", token)
    assert made["id"] == TOKEN_ID


async def test_ids_and_creation_times_are_kept(admin_world: AdminWorld) -> None:
    await _import_kong_consumer(admin_world)
    got = await _ok(admin_world, "GET", f"/consumers/{CONSUMER_ID}")
    assert (got["id"], got["username"], got["created_at"]) == (
        CONSUMER_ID,
        "kong-co",
        1_600_000_000,
    )
    app = await _ok(admin_world, "GET", f"/consumers/kong-co/oauth2/{APP_ID}")
    assert (app["client_id"], app["created_at"]) == ("kong-app", 1_600_000_100)
    for query in (f"credential={APP_ID}", "credential=kong-app", f"consumer={CONSUMER_ID}"):
        listed = await _ok(admin_world, "GET", f"/oauth2_tokens?{query}")
        assert [t["id"] for t in listed["data"]] == [TOKEN_ID], query
    token = await _ok(admin_world, "GET", f"/oauth2_tokens/{TOKEN_ID}")
    assert token["credential"] == {"id": APP_ID, "client_id": "kong-app"}
    assert token["consumer"] == {"id": CONSUMER_ID, "username": "kong-co"}
    assert (await admin_world.proxied(KONG_TOKEN)).status == 200


async def test_a_kong_hash_authenticates_the_real_secret_only(admin_world: AdminWorld) -> None:
    await _import_kong_consumer(admin_world)
    store = admin_world.gw.gateway.c.store
    assert store is not None
    stored = await store.find_credential("kong-app")
    assert stored is not None
    assert stored.secret_hash == KONG_HASH  # as given, never hashed again
    issued = await _grant(admin_world, "kong-app", KONG_SECRET)
    assert issued.status == 200, issued.text
    assert (await admin_world.proxied(issued.body["access_token"])).status == 200
    refused = await _grant(admin_world, "kong-app", KONG_HASH)
    assert refused.status == 400
    assert refused.body["error"] == "invalid_client"


async def test_a_patch_can_set_a_kong_hash(admin_world: AdminWorld) -> None:
    await _ok(admin_world, "PATCH", "/oauth2/otherclient", {"client_secret_hash": KONG_HASH})
    assert (await _grant(admin_world, "otherclient", KONG_SECRET)).status == 200
    assert (await _grant(admin_world, "otherclient", "other-secret")).status == 400


async def test_taken_ids_are_409(admin_world: AdminWorld) -> None:
    await _import_kong_consumer(admin_world)
    again = await admin_world.admin(
        "POST", "/consumers", json={"id": CONSUMER_ID, "username": "someone-else"}
    )
    assert again.status == 409
    unique_violation(again.body, "id", CONSUMER_ID)
    app = {"id": APP_ID, "name": "Twin", "client_id": "twin"}
    again = await admin_world.admin("POST", "/consumers/Other/oauth2", json=app)
    assert again.status == 409
    unique_violation(again.body, "id", APP_ID)
    token = {"id": TOKEN_ID, "credential": "otherclient", "expires_in": 60}
    again = await admin_world.admin("POST", "/oauth2_tokens", json=token)
    assert again.status == 409
    unique_violation(again.body, "id", TOKEN_ID)
    assert (await admin_world.admin("GET", "/oauth2/twin")).status == 404
    assert (await _ok(admin_world, "GET", "/consumers/Other"))["id"] != CONSUMER_ID


async def test_put_by_an_unknown_id_creates_with_that_id(admin_world: AdminWorld) -> None:
    new_id = str(uuid.uuid4())
    made = await _ok(admin_world, "PUT", f"/consumers/{new_id}", {"username": "put-by-id"})
    assert made["id"] == new_id
    app_id = str(uuid.uuid4())
    app = await _ok(admin_world, "PUT", f"/consumers/{new_id}/oauth2/{app_id}", {"name": "PutById"})
    assert app["id"] == app_id
    assert app["consumer"] == {"id": new_id}


async def test_a_get_body_can_be_written_back(admin_world: AdminWorld) -> None:
    """What GET shows (id and created_at included) is a valid PATCH and PUT: the same id and
    time are accepted, another is refused."""
    consumer = await _ok(admin_world, "GET", "/consumers/Other")
    assert await _ok(admin_world, "PATCH", "/consumers/Other", consumer) == consumer
    assert await _ok(admin_world, "PUT", f"/consumers/{consumer['id']}", consumer) == consumer
    moved = {**consumer, "id": str(uuid.uuid4()), "created_at": 1}
    reply = await admin_world.admin("PATCH", "/consumers/Other", json=moved)
    assert reply.status == 400
    schema_violation(reply.body, {"id": "cannot be changed", "created_at": "cannot be changed"})
    app = await _ok(admin_world, "GET", "/oauth2/otherclient")
    reply = await admin_world.admin("PATCH", "/oauth2/otherclient", json={"created_at": 1})
    assert reply.status == 400
    schema_violation(reply.body, {"created_at": "cannot be changed"})
    assert await _ok(admin_world, "GET", "/oauth2/otherclient") == app
    assert await _ok(admin_world, "GET", "/consumers/Other") == consumer


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"name": "A", "client_secret": KONG_HASH},
            {"client_secret": "is a PBKDF2 hash: send it as client_secret_hash"},
        ),
        (
            {"name": "A", "client_secret_hash": "$pbkdf2-sha512$nope"},
            {"client_secret_hash": PHC_FORMAT},
        ),
        (
            {"name": "A", "client_secret": "s", "client_secret_hash": KONG_HASH},
            {"client_secret_hash": "give client_secret or client_secret_hash, not both"},
        ),
        (
            {"name": "A", "client_type": "public", "client_secret_hash": KONG_HASH},
            {"client_secret_hash": "public clients have no secret"},
        ),
        ({"name": "A", "id": "kong-app"}, {"id": "expected a UUID"}),
        ({"name": "A", "created_at": 4_000_000_000}, {"created_at": "must not be in the future"}),
    ],
    ids=["hash-as-secret", "malformed-hash", "both", "public-with-hash", "bad-id", "future"],
)
async def test_credential_import_violations(
    admin_world: AdminWorld, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    reply = await admin_world.admin("POST", "/consumers/Other/oauth2", json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    assert len((await _ok(admin_world, "GET", "/consumers/Other/oauth2"))["data"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "fields"),
    [
        (
            "POST",
            "/consumers",
            {"tags": 5, "id": "x", "created_at": -1},
            {
                "tags": "expected an array",
                "id": "expected a UUID",
                "created_at": "expected an integer from 0 to 253402300799",
                "@entity": ENTITY_RULE,
            },
        ),
        (
            "PATCH",
            "/consumers/Other",
            {"username": None, "tags": ["a b"]},
            {
                "tags": ["invalid tag: printable ASCII without space, ',' or '/'"],
                "@entity": ENTITY_RULE,
            },
        ),
        (
            "PATCH",
            "/oauth2/publicclient",
            {"client_secret": "now-secret", "redirect_uris": ["x"]},
            {
                "client_secret": "public clients have no secret",
                "redirect_uris": ["cannot parse 'x'"],
            },
        ),
        (
            "PATCH",
            "/oauth2/publicclient",
            {"client_type": "confidential", "name": ""},
            {
                "client_secret": "required for a confidential client",
                "name": "expected a non-empty string",
            },
        ),
    ],
    ids=["consumer-create", "consumer-patch", "public-patch", "confidential-patch"],
)
async def test_every_problem_is_reported_at_once(
    admin_world: AdminWorld,
    method: str,
    path: str,
    body: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    before = [await _ok(admin_world, "GET", p) for p in ("/consumers", "/oauth2")]
    reply = await admin_world.admin(method, path, json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    assert [await _ok(admin_world, "GET", p) for p in ("/consumers", "/oauth2")] == before


async def test_a_token_patch_reports_what_cannot_change_with_its_other_problems(
    admin_world: AdminWorld,
) -> None:
    token = await _ok(
        admin_world, "POST", "/oauth2_tokens", {"credential": "clientid", "expires_in": 60}
    )
    body = {"authenticated_userid": "root", "expires_in": -1}
    reply = await admin_world.admin("PATCH", f"/oauth2_tokens/{token['id']}", json=body)
    assert reply.status == 400
    schema_violation(
        reply.body,
        {
            "authenticated_userid": "cannot be changed",
            "expires_in": "expected an integer from 0 to 316224000",
        },
    )
