"""`/consumers` (design §6): Kong's shapes, status codes, schema and unique violations, bodies
(JSON and form, malformed, too large) and the `/default` workspace prefix."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.admin.conftest import (
    CONSUMER_KEYS,
    NOT_FOUND,
    AdminWorld,
    schema_violation,
    unique_violation,
)

ENTITY_RULE = ["at least one of these fields must be non-empty: 'custom_id', 'username'"]


def _is_consumer(body: Any, username: str | None, custom_id: str | None, tags: Any) -> None:
    assert isinstance(body, dict)
    assert set(body) == CONSUMER_KEYS
    assert isinstance(body["id"], str)
    assert len(body["id"]) == 36
    assert body["username"] == username
    assert body["custom_id"] == custom_id
    assert body["tags"] == tags
    assert isinstance(body["created_at"], int)
    assert abs(body["created_at"] - time.time()) < 300
    assert body["type"] == 0


async def test_create_json_then_get_by_id_and_username(admin_world: AdminWorld) -> None:
    made = await admin_world.admin(
        "POST", "/consumers", json={"username": "alice", "custom_id": "a-1", "tags": ["x", "y"]}
    )
    assert made.status == 201
    assert made.headers["Content-Type"].startswith("application/json")
    _is_consumer(made.body, "alice", "a-1", ["x", "y"])
    for key in (made.body["id"], "alice"):
        got = await admin_world.admin("GET", f"/consumers/{key}")
        assert got.status == 200
        assert got.body == made.body


async def test_create_with_only_custom_id_or_only_username(admin_world: AdminWorld) -> None:
    only_custom = await admin_world.admin("POST", "/consumers", json={"custom_id": "c-only"})
    assert only_custom.status == 201
    _is_consumer(only_custom.body, None, "c-only", None)
    only_name = await admin_world.admin("POST", "/consumers", json={"username": "n-only"})
    assert only_name.status == 201
    _is_consumer(only_name.body, "n-only", None, None)


async def test_create_form_body(admin_world: AdminWorld) -> None:
    made = await admin_world.admin(
        "POST",
        "/consumers",
        data="username=formuser&custom_id=f%201&tags[]=a&tags[]=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert made.status == 201, made.text
    _is_consumer(made.body, "formuser", "f 1", ["a", "b"])
    plain = await admin_world.admin("POST", "/consumers", data={"username": "formuser2"})
    assert plain.status == 201, plain.text
    _is_consumer(plain.body, "formuser2", None, None)


@pytest.mark.parametrize("body", [{}, {"tags": ["t"]}])
async def test_username_or_custom_id_required(admin_world: AdminWorld, body: Any) -> None:
    reply = await admin_world.admin("POST", "/consumers", json=body)
    assert reply.status == 400
    schema_violation(reply.body, {"@entity": ENTITY_RULE})


async def test_empty_body_is_a_schema_violation(admin_world: AdminWorld) -> None:
    reply = await admin_world.admin("POST", "/consumers")
    assert reply.status == 400
    schema_violation(reply.body, {"@entity": ENTITY_RULE})


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"username": "u", "usernme": "typo"}, {"usernme": "unknown field"}),
        ({"username": 5}, {"username": "expected a non-empty string"}),
        ({"username": ""}, {"username": "expected a non-empty string"}),
        ({"username": "u", "tags": "notalist", "extra": 1}, {"extra": "unknown field"}),
        ({"username": "u", "tags": [1, "ok"]}, {"tags": ["expected a string", None]}),
        ({"username": "u" * 256}, {"username": "length must be at most 255"}),
    ],
    ids=[
        "unknown-field",
        "username-not-string",
        "username-empty",
        "tags-string-and-unknown",
        "tags-not-strings",
        "username-too-long",
    ],
)
async def test_schema_violations(
    admin_world: AdminWorld, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    reply = await admin_world.admin("POST", "/consumers", json=body)
    assert reply.status == 400
    schema_violation(reply.body, fields)
    listed = await admin_world.admin("GET", "/consumers")
    assert len(listed.body["data"]) == 2  # nothing was created


async def test_duplicate_username_and_custom_id_are_409(admin_world: AdminWorld) -> None:
    first = await admin_world.admin(
        "POST", "/consumers", json={"username": "bob", "custom_id": "b"}
    )
    assert first.status == 201
    again = await admin_world.admin("POST", "/consumers", json={"username": "bob"})
    assert again.status == 409
    unique_violation(again.body, "username", "bob")
    same_custom = await admin_world.admin("POST", "/consumers", json={"custom_id": "b"})
    assert same_custom.status == 409
    unique_violation(same_custom.body, "custom_id", "b")
    seeded = await admin_world.admin("POST", "/consumers", json={"username": "ClientApp"})
    assert seeded.status == 409
    unique_violation(seeded.body, "username", "ClientApp")


async def test_get_unknown_is_404(admin_world: AdminWorld) -> None:
    for key in ("nobody", "00000000-0000-4000-8000-000000000000"):
        reply = await admin_world.admin("GET", f"/consumers/{key}")
        assert reply.status == 404
        assert reply.body == NOT_FOUND


async def test_patch_is_partial_and_409_on_clash(admin_world: AdminWorld) -> None:
    made = await admin_world.admin(
        "POST", "/consumers", json={"username": "carol", "custom_id": "c-1", "tags": ["t"]}
    )
    cid = made.body["id"]
    patched = await admin_world.admin("PATCH", "/consumers/carol", json={"custom_id": "c-2"})
    assert patched.status == 200
    assert patched.body == {**made.body, "custom_id": "c-2"}
    by_id = await admin_world.admin("PATCH", f"/consumers/{cid}", json={"username": "carol2"})
    assert by_id.status == 200
    assert by_id.body == {**made.body, "custom_id": "c-2", "username": "carol2"}
    assert (await admin_world.admin("GET", "/consumers/carol")).status == 404

    clash = await admin_world.admin("PATCH", f"/consumers/{cid}", json={"username": "Other"})
    assert clash.status == 409
    unique_violation(clash.body, "username", "Other")
    clash_custom = await admin_world.admin(
        "PATCH", f"/consumers/{cid}", json={"custom_id": "client-app-1"}
    )
    assert clash_custom.status == 409
    unique_violation(clash_custom.body, "custom_id", "client-app-1")
    unchanged = await admin_world.admin("GET", f"/consumers/{cid}")
    assert unchanged.body == by_id.body

    bad = await admin_world.admin("PATCH", f"/consumers/{cid}", json={"nickname": "x"})
    assert bad.status == 400
    schema_violation(bad.body, {"nickname": "unknown field"})
    missing = await admin_world.admin("PATCH", "/consumers/nobody", json={"custom_id": "z"})
    assert missing.status == 404
    assert missing.body == NOT_FOUND


async def test_patch_cannot_leave_a_consumer_without_identity(admin_world: AdminWorld) -> None:
    """Kong validates the patched entity: username or custom_id must remain."""
    made = await admin_world.admin("POST", "/consumers", json={"username": "solo"})
    assert made.status == 201
    reply = await admin_world.admin("PATCH", "/consumers/solo", json={"username": None})
    assert reply.status == 400
    schema_violation(reply.body, {"@entity": ENTITY_RULE})
    assert (await admin_world.admin("GET", f"/consumers/{made.body['id']}")).body == made.body


@pytest.mark.parametrize("tag", ["a,b", "a/b", "has space"])
async def test_tags_with_reserved_characters_are_refused(admin_world: AdminWorld, tag: str) -> None:
    """Kong: `,` and `/` are reserved for the tags filter, non-printable ASCII (space) too."""
    reply = await admin_world.admin(
        "POST", "/consumers", json={"username": "t", "tags": ["ok", tag]}
    )
    assert reply.status == 400
    assert reply.body["code"] == 2
    assert reply.body["name"] == "schema violation"
    assert set(reply.body["fields"]) == {"tags"}
    assert (await admin_world.admin("GET", "/consumers/t")).status == 404


async def test_put_upserts_by_username(admin_world: AdminWorld) -> None:
    created = await admin_world.admin(
        "PUT", "/consumers/dave", json={"custom_id": "d-1", "tags": ["a"]}
    )
    assert created.status == 200
    _is_consumer(created.body, "dave", "d-1", ["a"])
    replaced = await admin_world.admin("PUT", "/consumers/dave", json={"tags": ["b"]})
    assert replaced.status == 200
    # a replacement: the same entity, fields not given are cleared
    assert replaced.body == {**created.body, "custom_id": None, "tags": ["b"]}
    by_id = await admin_world.admin(
        "PUT", f"/consumers/{created.body['id']}", json={"username": "dave2", "custom_id": "x"}
    )
    assert by_id.status == 200
    assert by_id.body == {**created.body, "username": "dave2", "custom_id": "x", "tags": None}
    clash = await admin_world.admin("PUT", "/consumers/dave2", json={"custom_id": "client-app-1"})
    assert clash.status == 409
    unique_violation(clash.body, "custom_id", "client-app-1")


async def test_delete_is_204_then_404_then_204(admin_world: AdminWorld) -> None:
    made = await admin_world.admin("POST", "/consumers", json={"username": "erin"})
    deleted = await admin_world.admin("DELETE", "/consumers/erin")
    assert deleted.status == 204
    assert deleted.text == ""
    assert (await admin_world.admin("GET", f"/consumers/{made.body['id']}")).status == 404
    again = await admin_world.admin("DELETE", "/consumers/erin")
    assert again.status == 204
    by_id = await admin_world.admin("DELETE", f"/consumers/{made.body['id']}")
    assert by_id.status == 204


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b'{"username": "x",}', b"[1, 2]", b'"just a string"', b"\xff\xfe", b"null"],
)
async def test_malformed_json_is_400_with_a_message(admin_world: AdminWorld, raw: bytes) -> None:
    for method, path in (("POST", "/consumers"), ("PATCH", "/consumers/ClientApp")):
        reply = await admin_world.admin(
            method, path, data=raw, headers={"Content-Type": "application/json"}
        )
        assert reply.status == 400, reply.text
        assert isinstance(reply.body, dict)
        assert isinstance(reply.body.get("message"), str)
        assert reply.body["message"]


async def test_body_over_64_kib_is_413(admin_world: AdminWorld) -> None:
    big = {"username": "big", "custom_id": "x" * (64 * 1024)}
    reply = await admin_world.admin("POST", "/consumers", json=big)
    assert reply.status == 413
    assert reply.body == {"message": "Payload too large"}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "chunked", "custom_id": "'
        for _ in range(17):
            yield b"y" * 4096
        yield b'"}'

    chunked = await admin_world.admin(
        "POST", "/consumers", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status == 413
    assert chunked.body == {"message": "Payload too large"}
    assert (await admin_world.admin("GET", "/consumers/big")).status == 404
    assert (await admin_world.admin("GET", "/consumers/chunked")).status == 404


async def test_body_just_under_the_limit_is_parsed(admin_world: AdminWorld) -> None:
    # a body of 64 KiB exactly reaches the schema (custom_id too long), not the size check
    prefix, suffix = b'{"username": "edge", "custom_id": "', b'"}'
    raw = prefix + b"z" * (64 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(raw) == 64 * 1024
    reply = await admin_world.admin(
        "POST", "/consumers", data=raw, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400
    schema_violation(reply.body, {"custom_id": "length must be at most 255"})


async def test_default_workspace_prefix_crud(admin_world: AdminWorld) -> None:
    made = await admin_world.admin("POST", "/default/consumers", json={"username": "ws"})
    assert made.status == 201
    _is_consumer(made.body, "ws", None, None)
    assert (await admin_world.admin("GET", "/consumers/ws")).body == made.body
    assert (await admin_world.admin("GET", "/default/consumers/ws")).body == made.body
    patched = await admin_world.admin("PATCH", "/default/consumers/ws", json={"custom_id": "w"})
    assert patched.status == 200
    assert patched.body["custom_id"] == "w"
    put = await admin_world.admin("PUT", "/default/consumers/ws2", json={})
    assert put.status == 200
    assert put.body["username"] == "ws2"
    assert (await admin_world.admin("DELETE", "/default/consumers/ws")).status == 204
    assert (await admin_world.admin("GET", "/consumers/ws")).status == 404


@pytest.mark.parametrize("workspace", ["other", "Default", "defaults", "kong"])
async def test_another_workspace_is_404(admin_world: AdminWorld, workspace: str) -> None:
    for method, path in (
        ("GET", f"/{workspace}/consumers"),
        ("GET", f"/{workspace}/consumers/ClientApp"),
        ("POST", f"/{workspace}/consumers"),
        ("GET", f"/{workspace}/oauth2_tokens"),
    ):
        reply = await admin_world.admin(method, path, json={"username": "ws-x"})
        assert reply.status == 404, (method, path)
        assert reply.body == NOT_FOUND
    assert (await admin_world.admin("GET", "/consumers/ws-x")).status == 404
