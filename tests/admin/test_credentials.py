"""OAuth applications (design §6): `/consumers/{c}/oauth2` and `/oauth2`. The secret is shown
once, on create; redirect URIs are checked per position; credentials made here work at the
token endpoint; a new secret kills the old one and the credential's tokens."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.admin.conftest import (
    CREDENTIAL_KEYS,
    INVALID_TOKEN,
    NOT_FOUND,
    AdminWorld,
    call,
    schema_violation,
    unique_violation,
    upstream_headers,
)
from tests.oauth.conftest import PROVISION_KEY

APP = {
    "name": "ReportsApp",
    "client_id": "reports",
    "client_secret": "reports-secret",
    "redirect_uris": ["https://reports.example/cb", "https://reports.example/cb2"],
}


async def _consumer_id(world: AdminWorld, key: str) -> str:
    reply = await world.admin("GET", f"/consumers/{key}")
    assert reply.status == 200
    return str(reply.body["id"])


def _is_credential(body: Any, consumer_id: str, **expected: Any) -> None:
    assert isinstance(body, dict)
    assert set(body) == CREDENTIAL_KEYS
    assert isinstance(body["id"], str)
    assert len(body["id"]) == 36
    assert body["hash_secret"] is True
    assert body["consumer"] == {"id": consumer_id}
    assert isinstance(body["created_at"], int)
    for name, value in {"client_type": "confidential", "tags": None, **expected}.items():
        assert body[name] == value, name


async def test_create_shows_the_secret_once(admin_world: AdminWorld) -> None:
    owner = await _consumer_id(admin_world, "ClientApp")
    made = await admin_world.admin("POST", "/consumers/ClientApp/oauth2", json=APP)
    assert made.status == 201
    assert made.body["client_secret"] == "reports-secret"
    shown = {k: v for k, v in made.body.items() if k != "client_secret"}
    _is_credential(
        shown,
        owner,
        name="ReportsApp",
        client_id="reports",
        redirect_uris=APP["redirect_uris"],
    )
    for path in (
        f"/consumers/ClientApp/oauth2/{made.body['id']}",
        "/consumers/ClientApp/oauth2/reports",
        f"/consumers/{owner}/oauth2/reports",
        f"/oauth2/{made.body['id']}",
        "/oauth2/reports",
        "/default/oauth2/reports",
    ):
        got = await admin_world.admin("GET", path)
        assert got.status == 200, path
        assert got.body == shown
    for path in ("/oauth2", "/consumers/ClientApp/oauth2"):
        listed = await admin_world.admin("GET", path)
        assert listed.status == 200
        assert all("client_secret" not in c for c in listed.body["data"])
        assert shown in listed.body["data"]
    assert "reports-secret" not in (await admin_world.admin("GET", "/oauth2?size=1000")).text

    store = admin_world.gw.gateway.c.store
    assert store is not None
    stored = await store.find_credential("reports")
    assert stored is not None
    assert stored.secret_hash is not None
    assert stored.secret_hash.startswith("$pbkdf2-sha512$i=")
    assert "reports-secret" not in stored.secret_hash


async def test_lists(admin_world: AdminWorld) -> None:
    everyone = await admin_world.admin("GET", "/oauth2")
    assert everyone.status == 200
    assert everyone.body["next"] is None
    assert sorted(c["client_id"] for c in everyone.body["data"]) == [
        "clientid",
        "kongclient",
        "otherclient",
        "publicclient",
    ]
    mine = await admin_world.admin("GET", "/consumers/Other/oauth2")
    assert [c["client_id"] for c in mine.body["data"]] == ["otherclient"]
    paged = await admin_world.admin("GET", "/oauth2?size=3")
    assert len(paged.body["data"]) == 3
    rest = await admin_world.admin("GET", paged.body["next"])
    assert len(rest.body["data"]) == 1
    assert rest.body["next"] is None
    missing = await admin_world.admin("GET", "/consumers/nobody/oauth2")
    assert missing.status == 404
    assert missing.body == NOT_FOUND


async def test_generated_client_id_and_secret(admin_world: AdminWorld) -> None:
    owner = await _consumer_id(admin_world, "Other")
    made = await admin_world.admin(
        "POST", "/consumers/Other/oauth2", json={"name": "Gen", "hash_secret": False}
    )
    assert made.status == 201
    secret = made.body.pop("client_secret")
    _is_credential(made.body, owner, name="Gen", redirect_uris=[])
    # 128-bit hex like Kong's: never starts with "-", which a shell command would take for an option
    assert re.fullmatch("[0-9a-f]{32}", made.body["client_id"]), made.body["client_id"]
    assert len(secret) >= 43
    assert made.body["client_id"] != secret
    got = await admin_world.admin("GET", f"/oauth2/{made.body['client_id']}")
    assert got.body == made.body
    token = await admin_world.password_token(made.body["client_id"], secret)
    assert (await admin_world.proxied(token["access_token"])).status == 200


async def test_public_client(admin_world: AdminWorld) -> None:
    owner = await _consumer_id(admin_world, "ClientApp")
    made = await admin_world.admin(
        "POST",
        "/consumers/ClientApp/oauth2",
        json={"name": "Pub", "client_type": "public", "redirect_uris": ["https://p.example/"]},
    )
    assert made.status == 201
    _is_credential(
        made.body,
        owner,
        name="Pub",
        client_type="public",
        redirect_uris=["https://p.example/"],
        client_id=made.body["client_id"],
    )
    with_secret = await admin_world.admin(
        "POST",
        "/consumers/ClientApp/oauth2",
        json={"name": "Pub2", "client_type": "public", "client_secret": "nope"},
    )
    assert with_secret.status == 400
    schema_violation(with_secret.body, {"client_secret": "public clients have no secret"})


async def test_form_body(admin_world: AdminWorld) -> None:
    made = await admin_world.admin(
        "POST",
        "/consumers/ClientApp/oauth2",
        data="name=FormApp&client_id=formapp&client_secret=fs"
        "&redirect_uris[]=https%3A%2F%2Fa.example%2Fcb&redirect_uris[]=https%3A%2F%2Fb.example%2F",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert made.status == 201, made.text
    assert made.body["redirect_uris"] == ["https://a.example/cb", "https://b.example/"]
    assert made.body["client_secret"] == "fs"
    single = await admin_world.admin(
        "POST",
        "/consumers/ClientApp/oauth2",
        data={"name": "Form2", "redirect_uris": "https://c.example/cb"},
    )
    assert single.status == 201, single.text
    assert single.body["redirect_uris"] == ["https://c.example/cb"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"name": "R", "redirect_uris": ["https://ok.example/cb", "x"]},
            {"redirect_uris": [None, "cannot parse 'x'"]},
        ),
        (
            {"name": "R", "redirect_uris": ["https://a.example/cb#frag"]},
            {"redirect_uris": ["fragment not allowed in 'https://a.example/cb#frag'"]},
        ),
        (
            {"name": "R", "redirect_uris": ["https://ok.example/", "https://a.example/cb#"]},
            {"redirect_uris": [None, "fragment not allowed in 'https://a.example/cb#'"]},
        ),
        (
            {"name": "R", "redirect_uris": ["/relative/cb"]},
            {"redirect_uris": ["cannot parse '/relative/cb'"]},
        ),
        ({"client_id": "noname"}, {"name": "required field missing"}),
        (
            {"name": "R", "client_type": "spa"},
            {"client_type": "expected one of: confidential, public"},
        ),
        ({"name": "R", "secret": "s"}, {"secret": "unknown field"}),
        (
            {"client_id": "x", "redirect_uris": ["x"]},
            {"name": "required field missing", "redirect_uris": ["cannot parse 'x'"]},
        ),
    ],
    ids=[
        "uri-unparsable",
        "uri-fragment",
        "uri-empty-fragment",
        "uri-relative",
        "name-missing",
        "bad-client-type",
        "unknown-field",
        "several",
    ],
)
async def test_schema_violations(
    admin_world: AdminWorld, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    reply = await admin_world.admin("POST", "/consumers/ClientApp/oauth2", json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    listed = await admin_world.admin("GET", "/oauth2")
    assert len(listed.body["data"]) == 4


async def test_duplicate_client_id_is_409(admin_world: AdminWorld) -> None:
    for owner in ("ClientApp", "Other"):
        reply = await admin_world.admin(
            "POST", f"/consumers/{owner}/oauth2", json={**APP, "client_id": "clientid"}
        )
        assert reply.status == 409
        unique_violation(reply.body, "client_id", "clientid")
    made = await admin_world.admin("POST", "/consumers/Other/oauth2", json=APP)
    assert made.status == 201
    clash = await admin_world.admin("PATCH", "/oauth2/reports", json={"client_id": "kongclient"})
    assert clash.status == 409
    unique_violation(clash.body, "client_id", "kongclient")


async def test_unknown_consumer_is_404(admin_world: AdminWorld) -> None:
    reply = await admin_world.admin("POST", "/consumers/nobody/oauth2", json=APP)
    assert reply.status == 404
    assert reply.body == NOT_FOUND
    assert (await admin_world.admin("GET", "/oauth2/reports")).status == 404


async def test_patch_by_id_and_by_client_id(admin_world: AdminWorld) -> None:
    made = await admin_world.admin("POST", "/consumers/ClientApp/oauth2", json=APP)
    cred_id = made.body["id"]
    renamed = await admin_world.admin(
        "PATCH", f"/consumers/ClientApp/oauth2/{cred_id}", json={"name": "Renamed"}
    )
    assert renamed.status == 200
    assert renamed.body["name"] == "Renamed"
    assert renamed.body["redirect_uris"] == APP["redirect_uris"]
    assert "client_secret" not in renamed.body
    moved = await admin_world.admin(
        "PATCH",
        "/oauth2/reports",
        json={"redirect_uris": ["https://new.example/cb"], "tags": ["t"]},
    )
    assert moved.status == 200
    assert moved.body["redirect_uris"] == ["https://new.example/cb"]
    assert moved.body["tags"] == ["t"]
    assert moved.body["name"] == "Renamed"
    new_id = await admin_world.admin(
        "PATCH", "/default/consumers/ClientApp/oauth2/reports", json={"client_id": "reports2"}
    )
    assert new_id.status == 200
    assert new_id.body["client_id"] == "reports2"
    assert new_id.body["id"] == cred_id
    assert (await admin_world.admin("GET", "/oauth2/reports")).status == 404
    bad = await admin_world.admin(
        "PATCH", f"/oauth2/{cred_id}", json={"redirect_uris": ["https://ok.example/", "x"]}
    )
    assert bad.status == 400
    schema_violation(bad.body, {"redirect_uris": [None, "cannot parse 'x'"]})
    missing = await admin_world.admin("PATCH", "/oauth2/nope", json={"name": "x"})
    assert missing.status == 404
    assert missing.body == NOT_FOUND


async def test_put_upserts_under_the_consumer(admin_world: AdminWorld) -> None:
    owner = await _consumer_id(admin_world, "ClientApp")
    created = await admin_world.admin(
        "PUT",
        "/consumers/ClientApp/oauth2/putclient",
        json={"name": "PutApp", "client_secret": "put-secret", "tags": ["t"]},
    )
    assert created.status == 200
    assert created.body.pop("client_secret") == "put-secret"
    _is_credential(
        created.body, owner, name="PutApp", client_id="putclient", redirect_uris=[], tags=["t"]
    )
    token = await admin_world.password_token("putclient", "put-secret")
    # The same secret again keeps its hash: a repeated PUT revokes nothing.
    replaced = await admin_world.admin(
        "PUT",
        f"/consumers/ClientApp/oauth2/{created.body['id']}",
        json={
            "name": "PutApp2",
            "client_id": "putclient",
            "client_secret": "put-secret",
            "redirect_uris": ["https://put.example/cb"],
        },
    )
    assert replaced.status == 200
    assert replaced.body.pop("client_secret") == "put-secret"
    assert replaced.body == {
        **created.body,
        "name": "PutApp2",
        "redirect_uris": ["https://put.example/cb"],
        "tags": None,  # a replacement: what the body omits returns to its default
    }
    assert (await admin_world.proxied(token["access_token"])).status == 200
    invalid = await admin_world.admin(
        "PUT", "/consumers/ClientApp/oauth2/putclient", json={"redirect_uris": ["x"]}
    )
    assert invalid.status == 400
    schema_violation(
        invalid.body, {"name": "required field missing", "redirect_uris": ["cannot parse 'x'"]}
    )


async def test_put_replaces_the_whole_application(admin_world: AdminWorld) -> None:
    """Kong's PUT is a full replace: omitted fields return to their defaults (a secret not
    given is generated, as on create), and only the id stays."""
    made = await admin_world.admin("POST", "/consumers/Other/oauth2", json={**APP, "tags": ["a"]})
    token = await admin_world.password_token("reports", "reports-secret")
    replaced = await admin_world.admin(
        "PUT", "/consumers/Other/oauth2/reports", json={"name": "Bare"}
    )
    assert replaced.status == 200, replaced.text
    new_secret = replaced.body.pop("client_secret")
    assert len(new_secret) >= 43
    assert replaced.body == {
        **{k: v for k, v in made.body.items() if k != "client_secret"},
        "name": "Bare",
        "redirect_uris": [],
        "tags": None,
    }
    assert (await admin_world.proxied(token["access_token"])).body == INVALID_TOKEN
    assert (
        await admin_world.proxied(
            (await admin_world.password_token("reports", new_secret))["access_token"]
        )
    ).status == 200
    public = await admin_world.admin(
        "PUT",
        f"/consumers/Other/oauth2/{made.body['id']}",
        json={"name": "NowPublic", "client_type": "public"},
    )
    assert public.status == 200, public.text
    assert "client_secret" not in public.body
    assert public.body["client_type"] == "public"
    assert public.body["client_id"] != "reports"  # generated: Kong's auto field
    assert public.body["id"] == made.body["id"]
    assert public.body["created_at"] == made.body["created_at"]


async def test_put_is_not_offered_under_oauth2(admin_world: AdminWorld) -> None:
    reply = await admin_world.admin("PUT", "/oauth2/clientid", json={"name": "x"})
    assert reply.status == 405
    assert reply.body == {"message": "Method not allowed"}


async def test_another_consumers_credential_is_404(admin_world: AdminWorld) -> None:
    seeded = await admin_world.admin("GET", "/oauth2/clientid")
    assert seeded.status == 200
    for key in ("clientid", seeded.body["id"]):
        path = f"/consumers/Other/oauth2/{key}"
        got = await admin_world.admin("GET", path)
        assert got.status == 404
        assert got.body == NOT_FOUND
        patched = await admin_world.admin("PATCH", path, json={"name": "Stolen"})
        assert patched.status == 404
        assert patched.body == NOT_FOUND
        deleted = await admin_world.admin("DELETE", path)
        assert deleted.status == 404
        assert deleted.body == NOT_FOUND
    put = await admin_world.admin(
        "PUT", "/consumers/Other/oauth2/clientid", json={"name": "Stolen", "client_secret": "s"}
    )
    assert put.status == 409
    unique_violation(put.body, "client_id", "clientid")
    after = await admin_world.admin("GET", "/oauth2/clientid")
    assert after.body == seeded.body  # untouched by all of the above


async def test_delete_by_id_and_by_client_id_kills_tokens(admin_world: AdminWorld) -> None:
    first = await admin_world.admin("POST", "/consumers/ClientApp/oauth2", json=APP)
    second = await admin_world.admin(
        "POST", "/consumers/ClientApp/oauth2", json={**APP, "client_id": "second"}
    )
    token = await admin_world.password_token("reports", "reports-secret")
    assert (await admin_world.proxied(token["access_token"])).status == 200
    gone = await admin_world.admin("DELETE", f"/consumers/ClientApp/oauth2/{first.body['id']}")
    assert gone.status == 204
    assert gone.text == ""
    refused = await admin_world.proxied(token["access_token"])
    assert refused.status == 401
    assert refused.body == INVALID_TOKEN
    assert (await admin_world.admin("GET", "/oauth2/reports")).status == 404
    assert (await admin_world.admin("DELETE", "/oauth2/second")).status == 204
    assert (await admin_world.admin("GET", f"/oauth2/{second.body['id']}")).status == 404
    for path in (
        "/oauth2/second",
        "/consumers/ClientApp/oauth2/second",
        f"/oauth2/{second.body['id']}",
        "/consumers/nobody/oauth2/second",
    ):
        again = await admin_world.admin("DELETE", path)
        assert again.status == 404  # Kong's nested credential endpoints
        assert again.body == NOT_FOUND


async def test_api_credential_gets_a_token(admin_world: AdminWorld) -> None:
    consumer = await admin_world.admin(
        "POST", "/consumers", json={"username": "ApiConsumer", "custom_id": "api-1"}
    )
    assert consumer.status == 201
    made = await admin_world.admin("POST", "/consumers/ApiConsumer/oauth2", json=APP)
    assert made.status == 201
    body = {
        "grant_type": "password",
        "client_id": "reports",
        "client_secret": "reports-secret",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "42",
        "scope": "read",
    }
    issued = await call(admin_world.proxy, "POST", admin_world.token_url, json=body)
    assert issued.status == 200
    assert set(issued.body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
    }
    seen = upstream_headers(await admin_world.proxied(issued.body["access_token"]))
    assert seen["x-consumer-username"] == "ApiConsumer"
    assert seen["x-consumer-custom-id"] == "api-1"
    assert seen["x-consumer-id"] == consumer.body["id"]
    assert seen["x-credential-identifier"] == "reports"
    assert seen["x-authenticated-userid"] == "42"
    assert seen["x-authenticated-scope"] == "read"


async def test_new_secret_kills_old_secret_and_tokens(admin_world: AdminWorld) -> None:
    await admin_world.admin("POST", "/consumers/Other/oauth2", json=APP)
    token = await admin_world.password_token("reports", "reports-secret")
    other = await admin_world.password_token("otherclient", "other-secret")
    assert (await admin_world.proxied(token["access_token"])).status == 200  # now cached

    patched = await admin_world.admin(
        "PATCH", "/consumers/Other/oauth2/reports", json={"client_secret": "rotated-secret"}
    )
    assert patched.status == 200
    assert patched.body["hash_secret"] is True

    refused = await admin_world.proxied(token["access_token"])
    assert refused.status == 401
    assert refused.body == INVALID_TOKEN
    old = {
        "grant_type": "password",
        "client_id": "reports",
        "client_secret": "reports-secret",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    failed = await call(admin_world.proxy, "POST", admin_world.token_url, json=old)
    assert failed.status == 400
    assert failed.body == {
        "error": "invalid_client",
        "error_description": "Invalid client authentication",
    }
    new = await admin_world.password_token("reports", "rotated-secret")
    assert (await admin_world.proxied(new["access_token"])).status == 200
    # the other credential of the same consumer is untouched
    assert (await admin_world.proxied(other["access_token"])).status == 200


async def test_patch_cannot_give_a_public_client_a_secret(admin_world: AdminWorld) -> None:
    """The rule of create ("public clients have no secret") holds for PATCH too."""
    before = await _credential_body(admin_world, "publicclient")
    reply = await admin_world.admin(
        "PATCH", "/oauth2/publicclient", json={"client_secret": "now-secret"}
    )
    assert reply.status == 400
    schema_violation(reply.body, {"client_secret": "public clients have no secret"})
    store = admin_world.gw.gateway.c.store
    assert store is not None
    stored = await store.find_credential("publicclient")
    assert stored is not None
    assert stored.secret_hash is None
    assert await _credential_body(admin_world, "publicclient") == before


async def _credential_body(world: AdminWorld, key: str) -> dict[str, Any]:
    reply = await world.admin("GET", f"/oauth2/{key}")
    assert reply.status == 200
    assert isinstance(reply.body, dict)
    return reply.body
