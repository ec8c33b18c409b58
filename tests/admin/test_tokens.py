"""`/oauth2_tokens` (design §6, §8): list with filters, get by id or value, import by POST or
PUT, patch expiry and scope, revoke one or in bulk; every change reaches the proxy at once
(the cached entry is evicted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.admin.conftest import (
    INVALID_TOKEN,
    NOT_FOUND,
    AdminWorld,
    Reply,
    call,
    schema_violation,
    unique_violation,
    upstream_headers,
)
from tests.conftest import Clock
from tests.oauth.conftest import SECRET

TOKEN_KEYS = {
    "id",
    "access_token_prefix",
    "token_type",
    "credential",
    "consumer",
    "service",
    "authenticated_userid",
    "scope",
    "created_at",
    "expires_in",
    "expires_at",
    "revoked",
    "active",
    "has_refresh_token",
}
IMPORTED = "imported-token-0123456789-abcdefghijklmnop"


async def _credential(world: AdminWorld, client_id: str) -> dict[str, Any]:
    reply = await world.admin("GET", f"/oauth2/{client_id}")
    assert reply.status == 200
    assert isinstance(reply.body, dict)
    return reply.body


async def _consumer(world: AdminWorld, username: str) -> dict[str, Any]:
    reply = await world.admin("GET", f"/consumers/{username}")
    assert reply.status == 200
    assert isinstance(reply.body, dict)
    return reply.body


async def _listed(world: AdminWorld, query: str) -> list[dict[str, Any]]:
    reply = await world.admin("GET", f"/oauth2_tokens?{query}")
    assert reply.status == 200, reply.text
    assert reply.body["next"] is None
    data = reply.body["data"]
    assert isinstance(data, list)
    return data


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {str(item["id"]) for item in items}


async def test_seed_flow_list_and_revoke_a_token(admin_world: AdminWorld) -> None:
    """The seed: a consumer and an app made through the admin API, a password-grant token,
    found in `/default/oauth2_tokens`, deleted, and refused on the very next request."""
    consumer = await admin_world.admin("POST", "/consumers", json={"username": "SeedCo"})
    assert consumer.status == 201
    app = await admin_world.admin(
        "POST",
        "/consumers/SeedCo/oauth2",
        json={
            "name": "SeedApp",
            "client_id": "seedapp",
            "client_secret": "seed-secret",
            "redirect_uris": ["https://seed.example/cb"],
        },
    )
    assert app.status == 201
    before = int(time.time())
    issued = await admin_world.password_token("seedapp", "seed-secret", "user-7", "read write")
    access = issued["access_token"]
    assert (await admin_world.proxied(access)).status == 200

    listed = await admin_world.admin("GET", "/default/oauth2_tokens")
    assert listed.status == 200
    assert listed.headers["Content-Type"].startswith("application/json")
    assert listed.body["next"] is None
    assert len(listed.body["data"]) == 1
    entry = listed.body["data"][0]
    assert set(entry) == TOKEN_KEYS
    assert "access_token" not in entry
    assert "refresh_token" not in entry
    assert access not in listed.text
    assert issued["refresh_token"] not in listed.text
    assert entry["access_token_prefix"] == access[:6]
    assert entry["token_type"] == "bearer"
    assert entry["credential"] == {"id": app.body["id"], "client_id": "seedapp"}
    assert entry["consumer"] == {"id": consumer.body["id"], "username": "SeedCo"}
    assert entry["service"] == {"id": "events", "name": "events"}
    assert entry["authenticated_userid"] == "user-7"
    assert entry["scope"] == "read write"
    assert before - 1 <= entry["created_at"] <= time.time() + 1
    assert entry["expires_in"] == 7200
    assert entry["expires_at"] == entry["created_at"] + 7200
    assert entry["revoked"] is False
    assert entry["active"] is True
    assert entry["has_refresh_token"] is True

    deleted = await admin_world.admin("DELETE", f"/oauth2_tokens/{entry['id']}")
    assert deleted.status == 204
    assert deleted.text == ""
    refused = await admin_world.proxied(access)
    assert refused.status == 401
    assert refused.body == INVALID_TOKEN
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="edgeauth", error="invalid_token", '
        'error_description="The access token is invalid or has expired"'
    )
    after = await admin_world.admin("GET", f"/default/oauth2_tokens/{entry['id']}")
    assert after.status == 200
    assert after.body == {**entry, "revoked": True, "active": False}


async def test_get_by_id_and_by_value(admin_world: AdminWorld) -> None:
    issued = await admin_world.password_token("clientid", SECRET, "u1", "read")
    access = issued["access_token"]
    [entry] = await _listed(admin_world, "")
    for key in (entry["id"], access):
        for prefix in ("", "/default"):
            got = await admin_world.admin("GET", f"{prefix}/oauth2_tokens/{key}")
            assert got.status == 200
            assert got.body == entry
            assert "access_token" not in got.body
    for key in (
        "no-such-token",
        "00000000-0000-4000-8000-000000000000",
        issued["refresh_token"],  # a refresh token is not an access token
        access[:6],
    ):
        missing = await admin_world.admin("GET", f"/oauth2_tokens/{key}")
        assert missing.status == 404
        assert missing.body == NOT_FOUND


async def test_list_filters(admin_world: AdminWorld) -> None:
    a = await admin_world.password_token("clientid", SECRET, "u1", "read")
    b = await admin_world.password_token("clientid", SECRET, "u2")
    c = await admin_world.password_token("otherclient", "other-secret", "u1")
    everything = await _listed(admin_world, "")
    by_prefix = {t["access_token_prefix"]: t["id"] for t in everything}
    assert len(by_prefix) == 3
    ta, tb, tc = (by_prefix[t["access_token"][:6]] for t in (a, b, c))

    clientid = await _credential(admin_world, "clientid")
    other = await _consumer(admin_world, "Other")
    cases = {
        "authenticated_userid=u1": {ta, tc},
        "authenticated_userid=u2": {tb},
        "authenticated_userid=nobody": set(),
        "credential=clientid": {ta, tb},
        f"credential={clientid['id']}": {ta, tb},
        "credential=otherclient&authenticated_userid=u1": {tc},
        "credential=no-such-client": set(),
        "consumer=Other": {tc},
        f"consumer={other['id']}": {tc},
        "consumer=ClientApp": {ta, tb},
        "consumer=nobody": set(),
        "service=events": {ta, tb, tc},
        "service=nope": set(),
        "active=true": {ta, tb, tc},
        "active=false": set(),
    }
    for query, expected in cases.items():
        assert _ids(await _listed(admin_world, query)) == expected, query

    assert (await admin_world.admin("DELETE", f"/oauth2_tokens/{tb}")).status == 204
    assert _ids(await _listed(admin_world, "active=true")) == {ta, tc}
    [dead] = await _listed(admin_world, "active=false")
    assert dead["id"] == tb
    assert dead["revoked"] is True
    assert dead["active"] is False
    assert _ids(await _listed(admin_world, "active=false&consumer=ClientApp")) == {tb}

    bad = await admin_world.admin("GET", "/oauth2_tokens?active=maybe")
    assert bad.status == 400
    assert isinstance(bad.body["message"], str)


async def test_post_imports_a_token_by_value(admin_world: AdminWorld) -> None:
    cred = await _credential(admin_world, "clientid")
    body = {
        "credential": {"id": cred["id"]},
        "service": {"id": "events"},
        "access_token": IMPORTED,
        "authenticated_userid": "u9",
        "scope": "read",
        "expires_in": 3600,
    }
    made = await admin_world.admin("POST", "/oauth2_tokens", json=body)
    assert made.status == 201, made.text
    assert set(made.body) == TOKEN_KEYS | {"access_token"}
    assert made.body["access_token"] == IMPORTED
    assert made.body["access_token_prefix"] == IMPORTED[:6]
    assert made.body["credential"] == {"id": cred["id"], "client_id": "clientid"}
    assert made.body["service"] == {"id": "events", "name": "events"}
    assert made.body["authenticated_userid"] == "u9"
    assert made.body["scope"] == "read"
    assert made.body["expires_in"] == 3600
    assert made.body["revoked"] is False

    seen = upstream_headers(await admin_world.proxied(IMPORTED))
    assert seen["x-authenticated-userid"] == "u9"
    assert seen["x-authenticated-scope"] == "read"
    assert seen["x-credential-identifier"] == "clientid"
    assert seen["x-consumer-username"] == "ClientApp"

    got = await admin_world.admin("GET", f"/oauth2_tokens/{IMPORTED}")
    assert got.status == 200
    assert got.body == {k: v for k, v in made.body.items() if k != "access_token"}

    again = await admin_world.admin("POST", "/oauth2_tokens", json=body)
    assert again.status == 409
    unique_violation(again.body, "access_token", IMPORTED[:6] + "...")


async def test_post_mints_a_token_when_none_is_given(admin_world: AdminWorld) -> None:
    body = {"credential": "otherclient", "service": "events", "expires_in": 600}
    made = await admin_world.admin("POST", "/oauth2_tokens", json=body)
    assert made.status == 201, made.text
    access = made.body["access_token"]
    assert len(access) >= 43
    assert made.body["expires_in"] == 600
    assert made.body["scope"] is None
    assert (await admin_world.proxied(access)).status == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"credential": "required field missing", "expires_in": "required field missing"}),
        (
            {"service": "events", "expires_in": 60},
            {"credential": "required field missing"},
        ),
        (
            {"credential": "no-such-client", "service": "events", "expires_in": 60},
            {"credential": "does not exist"},
        ),
        (
            {"credential": "clientid", "service": "nope", "expires_in": 60},
            {"service": "does not exist"},
        ),
        (
            {"credential": "no-such-client", "service": "nope", "expires_in": -5, "x": 1},
            {
                "credential": "does not exist",
                "service": "does not exist",
                "expires_in": "expected an integer from 0 to 316224000",
                "x": "unknown field",
            },
        ),
        (
            {"credential": "clientid", "expires_in": -5},
            {"expires_in": "expected an integer from 0 to 316224000"},
        ),
        ({"credential": "clientid", "expires_in": 60, "value": "x"}, {"value": "unknown field"}),
        (
            {"credential": "clientid", "expires_in": "\u00b2"},
            {"expires_in": "expected an integer from 0 to 316224000"},
        ),
        (
            {"credential": {"id": None}, "expires_in": 60},
            {"credential": 'expected a reference {"id": ...}'},
        ),
        (
            {"credential": "clientid", "expires_in": 60, "token_type": "mac"},
            {"token_type": "expected one of: bearer"},
        ),
        (
            {"credential": "clientid", "expires_in": 60, "id": "not-an-id"},
            {"id": "expected a UUID"},
        ),
    ],
    ids=[
        "empty",
        "no-credential",
        "unknown-credential",
        "unknown-service",
        "every-problem-at-once",
        "negative-expires",
        "unknown-field",
        "superscript-expires",
        "empty-reference",
        "token-type",
        "bad-id",
    ],
)
async def test_post_schema_violations(
    admin_world: AdminWorld, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    reply = await admin_world.admin("POST", "/oauth2_tokens", json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    assert await _listed(admin_world, "") == []


def _until(clock: Clock, moment: float) -> None:
    """Move the gateway's clock on to just after `moment` (seconds since the epoch)."""
    clock.advance(max(0.0, moment - clock()) + 0.2)


async def _refresh(world: AdminWorld, refresh_token: str) -> Reply:
    body = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": "clientid",
        "client_secret": SECRET,
    }
    return await call(world.proxy, "POST", world.token_url, json=body)


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_an_imported_token_lives_from_its_created_at(
    admin_world: AdminWorld, method: str, clock: Clock
) -> None:
    """A Kong token made an hour ago with expires_in 3600 has two seconds left, not an hour."""
    created = int(time.time()) - 3598
    body = {"credential": "clientid", "service": "events", "expires_in": 3600}
    body |= {"created_at": created, "access_token": IMPORTED}
    path = "/oauth2_tokens" if method == "POST" else f"/oauth2_tokens/{IMPORTED}"
    made = await admin_world.admin(method, path, json=body)
    assert made.status in (200, 201), made.text
    assert made.body["created_at"] == created
    assert made.body["expires_in"] == 3600
    assert made.body["expires_at"] == created + 3600
    assert (await admin_world.proxied(IMPORTED)).status == 200
    _until(clock, created + 3600)
    refused = await admin_world.proxied(IMPORTED)
    assert refused.status == 401
    assert refused.body == INVALID_TOKEN
    [entry] = await _listed(admin_world, "")
    assert entry["active"] is False


async def test_an_imported_token_dies_with_its_ttl(admin_world: AdminWorld, clock: Clock) -> None:
    """Kong's `ttl` is the row's time to live: at its end both halves of the pair are gone."""
    refresh_token = "imported-refresh-0123456789-abcdefghijk"
    body: dict[str, Any] = {
        "credential": "clientid",
        "service": "events",
        "access_token": IMPORTED,
        "refresh_token": refresh_token,
        "expires_in": 3600,
        "ttl": 2,
    }
    before = time.time()
    made = await admin_world.admin("POST", "/oauth2_tokens", json=body)
    assert made.status == 201, made.text
    assert made.body["expires_at"] <= time.time() + 2
    assert made.body["expires_in"] <= 3
    assert (await admin_world.proxied(IMPORTED)).status == 200
    _until(clock, before + 2 + 1)
    assert (await admin_world.proxied(IMPORTED)).body == INVALID_TOKEN
    refused = await _refresh(admin_world, refresh_token)
    assert refused.status == 400
    assert refused.body == {
        "error": "invalid_grant",
        "error_description": "The refresh_token has expired",
    }


async def test_a_ttl_put_on_a_stored_token_cuts_its_life(
    admin_world: AdminWorld, clock: Clock
) -> None:
    issued = await admin_world.password_token("clientid", SECRET, "u1")
    access = issued["access_token"]
    assert (await admin_world.proxied(access)).status == 200  # cached from here on
    before = time.time()
    cut = await admin_world.admin("PUT", f"/oauth2_tokens/{access}", json={"ttl": 1})
    assert cut.status == 200, cut.text
    assert before <= cut.body["expires_at"] <= time.time() + 1
    _until(clock, before + 2)
    assert (await admin_world.proxied(access)).body == INVALID_TOKEN


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        (
            {"created_at": 1_700_000_000, "expires_in": 3600},
            {"expires_in": "the token expired at 1700003600 (created_at + expires_in)"},
        ),
        ({"created_at": 4_000_000_000}, {"created_at": "must not be in the future"}),
        (
            {"created_at": "yesterday"},
            {"created_at": "expected an integer from 0 to 253402300799"},
        ),
        ({"ttl": 0}, {"ttl": "expected an integer from 1 to 316224000"}),
    ],
    ids=["expired", "future-created-at", "bad-created-at", "zero-ttl"],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_an_import_that_cannot_live_is_refused(
    admin_world: AdminWorld, method: str, extra: dict[str, Any], fields: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"credential": "clientid", "service": "events", "expires_in": 3600}
    body |= {"access_token": IMPORTED, **extra}
    path = "/oauth2_tokens" if method == "POST" else f"/oauth2_tokens/{IMPORTED}"
    reply = await admin_world.admin(method, path, json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    assert await _listed(admin_world, "") == []
    assert (await admin_world.proxied(IMPORTED)).status == 401


async def test_put_imports_by_value(admin_world: AdminWorld) -> None:
    """PUT is an upsert: Kong and design §6 answer 200 (create 201 is for POST)."""
    body: dict[str, Any] = {"credential": {"id": "clientid"}, "service": "events"}
    body |= {"authenticated_userid": "p1", "expires_in": 3600}
    made = await admin_world.admin("PUT", f"/oauth2_tokens/{IMPORTED}", json=body)
    assert made.status in (200, 201), made.text
    assert made.body["access_token"] == IMPORTED
    assert made.body["authenticated_userid"] == "p1"
    seen = upstream_headers(await admin_world.proxied(IMPORTED))
    assert seen["x-authenticated-userid"] == "p1"
    updated = await admin_world.admin("PUT", f"/oauth2_tokens/{IMPORTED}", json={"scope": "write"})
    assert updated.status == 200
    assert updated.body["id"] == made.body["id"]
    assert updated.body["scope"] == "write"
    assert "access_token" not in updated.body
    assert made.status == 200  # design §6: put 200 (Kong's upsert)


async def test_patch_expiry_and_scope(admin_world: AdminWorld) -> None:
    issued = await admin_world.password_token("clientid", SECRET, "u1", "read")
    access = issued["access_token"]
    seen = upstream_headers(await admin_world.proxied(access))  # the token is now cached
    assert seen["x-authenticated-scope"] == "read"

    widened = await admin_world.admin(
        "PATCH", f"/oauth2_tokens/{access}", json={"scope": "read write"}
    )
    assert widened.status == 200
    assert widened.body["scope"] == "read write"
    assert "access_token" not in widened.body
    seen = upstream_headers(await admin_world.proxied(access))
    assert seen["x-authenticated-scope"] == "read write"

    token_id = widened.body["id"]
    longer = await admin_world.admin("PATCH", f"/oauth2_tokens/{token_id}", json={"expires_in": 60})
    assert longer.status == 200
    assert longer.body["expires_in"] == 60
    assert longer.body["expires_at"] == longer.body["created_at"] + 60
    assert longer.body["active"] is True
    never = await admin_world.admin("PATCH", f"/oauth2_tokens/{token_id}", json={"expires_in": 0})
    assert never.status == 200
    assert never.body["expires_in"] is None
    assert never.body["expires_at"] is None
    assert (await admin_world.proxied(access)).status == 200

    fixed = await admin_world.admin(
        "PATCH", f"/oauth2_tokens/{token_id}", json={"authenticated_userid": "root"}
    )
    assert fixed.status == 400
    schema_violation(fixed.body, {"authenticated_userid": "cannot be changed"})
    missing = await admin_world.admin("PATCH", "/oauth2_tokens/nope", json={"scope": "read"})
    assert missing.status == 404
    assert missing.body == NOT_FOUND


async def test_delete_by_value_and_unknown(admin_world: AdminWorld) -> None:
    issued = await admin_world.password_token("clientid", SECRET, "u1")
    access = issued["access_token"]
    assert (await admin_world.proxied(access)).status == 200
    assert (await admin_world.admin("DELETE", f"/oauth2_tokens/{access}")).status == 204
    assert (await admin_world.proxied(access)).body == INVALID_TOKEN
    for key in ("no-such-token", "00000000-0000-4000-8000-000000000000", access):
        again = await admin_world.admin("DELETE", f"/default/oauth2_tokens/{key}")
        assert again.status == 204
        assert again.text == ""


async def test_bulk_revoke_by_user(admin_world: AdminWorld) -> None:
    u1 = [
        await admin_world.password_token("clientid", SECRET, "u1"),
        await admin_world.password_token("otherclient", "other-secret", "u1"),
        await admin_world.password_token("clientid", SECRET, "u1", "write"),
    ]
    u2 = [
        await admin_world.password_token("clientid", SECRET, "u2"),
        await admin_world.password_token("otherclient", "other-secret", "u2"),
    ]
    for t in u1 + u2:
        assert (await admin_world.proxied(t["access_token"])).status == 200

    revoked = await admin_world.admin("DELETE", "/oauth2_tokens?authenticated_userid=u1")
    assert revoked.status == 200
    assert revoked.body == {"revoked": 3}
    for t in u1:
        refused = await admin_world.proxied(t["access_token"])
        assert refused.status == 401
        assert refused.body == INVALID_TOKEN
    for t in u2:
        assert (await admin_world.proxied(t["access_token"])).status == 200

    again = await admin_world.admin("DELETE", "/default/oauth2_tokens?authenticated_userid=u1")
    assert again.body == {"revoked": 0}
    by_cred = await admin_world.admin(
        "DELETE", "/oauth2_tokens?credential=otherclient&authenticated_userid=u2"
    )
    assert by_cred.body == {"revoked": 1}
    assert (await admin_world.proxied(u2[0]["access_token"])).status == 200
    assert (await admin_world.proxied(u2[1]["access_token"])).status == 401


@pytest.mark.parametrize("query", ["", "?", "?size=10", "?foo=bar"])
async def test_bulk_revoke_without_a_filter_is_400(admin_world: AdminWorld, query: str) -> None:
    issued = await admin_world.password_token("clientid", SECRET, "u1")
    reply = await admin_world.admin("DELETE", f"/oauth2_tokens{query}")
    assert reply.status == 400
    assert set(reply.body) == {"message"}
    assert "filter" in reply.body["message"]
    assert (await admin_world.proxied(issued["access_token"])).status == 200


async def test_deleting_a_consumer_cascades(admin_world: AdminWorld) -> None:
    mine = [
        await admin_world.password_token("clientid", SECRET, "u1"),
        await admin_world.password_token("kongclient", "tofu", "u2"),
    ]
    theirs = await admin_world.password_token("otherclient", "other-secret", "u1")
    for t in [*mine, theirs]:
        assert (await admin_world.proxied(t["access_token"])).status == 200
    ids = _ids(await _listed(admin_world, "consumer=ClientApp"))
    assert len(ids) == 2

    assert (await admin_world.admin("DELETE", "/consumers/ClientApp")).status == 204
    for t in mine:
        refused = await admin_world.proxied(t["access_token"])
        assert refused.status == 401
        assert refused.body == INVALID_TOKEN
    assert (await admin_world.proxied(theirs["access_token"])).status == 200
    for client_id in ("clientid", "kongclient", "publicclient"):
        gone = await admin_world.admin("GET", f"/oauth2/{client_id}")
        assert gone.status == 404
        assert gone.body == NOT_FOUND
    for token_id in ids:
        assert (await admin_world.admin("GET", f"/oauth2_tokens/{token_id}")).status == 404
    remaining = await _listed(admin_world, "")
    assert [t["consumer"]["username"] for t in remaining] == ["Other"]


async def test_a_huge_expires_in_is_400_and_the_token_never_reaches_the_log(
    admin_world: AdminWorld,
) -> None:
    token = (await admin_world.password_token("clientid", SECRET))["access_token"]
    reply = await admin_world.admin(
        "PATCH", f"/oauth2_tokens/{token}", json={"expires_in": int("9" * 400)}
    )
    assert reply.status == 400
    assert token not in reply.text
    ten_years_and_a_day = 10 * 366 * 86400 + 86400
    reply = await admin_world.admin(
        "PATCH", f"/oauth2_tokens/{token}", json={"expires_in": ten_years_and_a_day}
    )
    assert reply.status == 400
    assert "expires_in" in reply.body["fields"]
    assert (await admin_world.proxied(token)).status == 200  # unchanged


async def test_a_body_arriving_in_pieces_is_read_whole(admin_world: AdminWorld) -> None:
    body = (
        '{"username": "' + "p" * 200 + '", "tags": [' + ",".join(['"t"'] * 3000) + "]}"
    ).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]
            await asyncio.sleep(0.001)

    reply = await admin_world.admin(
        "POST", "/consumers", data=pieces(), headers={"Content-Type": "application/json"}
    )
    assert reply.status == 201, reply.text
    assert len(reply.body["tags"]) == 3000
