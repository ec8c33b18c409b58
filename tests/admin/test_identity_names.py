"""Names the admin API (and the config seed) accept for consumers, applications and tokens.

Admin paths take an id or a name in one place (`/oauth2/{id or client_id}`, `/consumers/{id or
username}`, `{"credential": ...}`) and try the id first: a client_id or username shaped like
a UUID could hand those lookups to another entity, so it is refused. Values that reach
backends in identity headers hold no control characters. Text that is not UTF-8 (in a path,
a query or a form body) is a 400, never a guess.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edgeauth.errors import ConfigError
from tests.admin.conftest import AdminWorld, schema_violation
from tests.conftest import Backend, GatewayFactory
from tests.oauth.conftest import events_service

UUID_SHAPED = "must not have the form of a UUID (the admin API would read it as an id)"
CONTROL = "must not contain control characters"
NOT_UTF8_TARGET = {"message": "The request target is not valid UTF-8 once percent-decoded"}
NOT_UTF8_FORM = {"message": "Cannot parse form body: not valid UTF-8"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _get(world: AdminWorld, path: str) -> Any:
    reply = await world.admin("GET", path)
    assert reply.status == 200, reply.text
    return reply.body


async def _refused(
    world: AdminWorld, method: str, path: str, body: Any, field: str, why: str
) -> None:
    reply = await world.admin(method, path, json=body)
    assert reply.status == 400, (method, path, reply.text)
    schema_violation(reply.body, {field: why})


# A. UUID-shaped names -----------------------------------------------------------------------
async def test_a_client_id_shaped_like_an_id_is_refused(admin_world: AdminWorld) -> None:
    made = await admin_world.admin("POST", "/consumers/ClientApp/oauth2", json={"name": "Victim"})
    assert made.status == 201
    victim = {k: v for k, v in made.body.items() if k != "client_secret"}
    taken = victim["id"]
    for method, path in (
        ("POST", "/consumers/Other/oauth2"),
        ("PATCH", "/consumers/Other/oauth2/otherclient"),
        ("PATCH", "/oauth2/otherclient"),
        ("PUT", "/consumers/Other/oauth2/otherclient"),
        ("PUT", "/consumers/Other/oauth2/newclient"),
    ):
        for client_id in (taken, taken.upper(), str(uuid.uuid4())):
            body = {"name": "Thief", "client_id": client_id}
            await _refused(admin_world, method, path, body, "client_id", UUID_SHAPED)
    # Every lookup by that id still reaches the victim, and nothing else changed.
    assert await _get(admin_world, f"/oauth2/{taken}") == victim
    assert (await _get(admin_world, "/oauth2/otherclient"))["name"] == "OtherApp"
    assert (await admin_world.admin("GET", "/oauth2/newclient")).status == 404
    minted = await admin_world.admin(
        "POST", "/oauth2_tokens", json={"credential": taken, "expires_in": 60}
    )
    assert minted.status == 201
    assert minted.body["credential"] == {"id": taken, "client_id": victim["client_id"]}


async def test_a_username_shaped_like_an_id_is_refused(admin_world: AdminWorld) -> None:
    victim = await _get(admin_world, "/consumers/ClientApp")
    taken = victim["id"]
    for method, path in (
        ("POST", "/consumers"),
        ("PATCH", "/consumers/Other"),
        ("PUT", "/consumers/Other"),
        ("PUT", "/consumers/newcomer"),
    ):
        for username in (taken, taken.upper(), str(uuid.uuid4())):
            await _refused(
                admin_world, method, path, {"username": username}, "username", UUID_SHAPED
            )
    assert await _get(admin_world, f"/consumers/{taken}") == victim
    assert (await _get(admin_world, "/consumers/Other"))["username"] == "Other"
    assert len((await _get(admin_world, "/consumers"))["data"]) == 2
    # A custom_id is never looked up in place of an id: external UUIDs are fine there.
    external = str(uuid.uuid4())
    made = await admin_world.admin("POST", "/consumers", json={"custom_id": external})
    assert (made.status, made.body["custom_id"]) == (201, external)


async def test_an_imported_token_shaped_like_an_id_is_refused(admin_world: AdminWorld) -> None:
    """DELETE /oauth2_tokens/{id or token} tries the id first: an access token equal to
    another token's id would revoke that one instead."""
    victim = await admin_world.admin(
        "POST", "/oauth2_tokens", json={"credential": "clientid", "expires_in": 60}
    )
    assert victim.status == 201
    body = {"credential": "clientid", "access_token": victim.body["id"], "expires_in": 60}
    why = "must not have the form of a UUID (token ids have it)"
    await _refused(admin_world, "POST", "/oauth2_tokens", body, "access_token", why)
    assert (await _get(admin_world, f"/oauth2_tokens/{victim.body['id']}"))["active"] is True


# B. control characters ----------------------------------------------------------------------
@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"])
async def test_identity_fields_refuse_control_characters(
    admin_world: AdminWorld, char: str
) -> None:
    text = f"a{char}b"
    app = "/consumers/ClientApp/oauth2"
    for method, path, body, field in (
        ("POST", "/consumers", {"username": text}, "username"),
        ("POST", "/consumers", {"username": "fine", "custom_id": text}, "custom_id"),
        ("PATCH", "/consumers/Other", {"username": text}, "username"),
        ("PATCH", "/consumers/Other", {"custom_id": text}, "custom_id"),
        ("PUT", "/consumers/Other", {"username": "Other", "custom_id": text}, "custom_id"),
        ("POST", app, {"name": "n", "client_id": text}, "client_id"),
        ("PATCH", "/oauth2/otherclient", {"client_id": text}, "client_id"),
        ("PUT", f"{app}/clientid", {"name": "n", "client_id": text}, "client_id"),
        (
            "POST",
            "/oauth2_tokens",
            {"credential": "clientid", "expires_in": 60, "authenticated_userid": text},
            "authenticated_userid",
        ),
        (
            "POST",
            "/oauth2_tokens",
            {"credential": "clientid", "expires_in": 60, "scope": text},
            "scope",
        ),
    ):
        await _refused(admin_world, method, path, body, field, CONTROL)
    assert len((await _get(admin_world, "/consumers"))["data"]) == 2
    assert (await _get(admin_world, "/oauth2_tokens"))["data"] == []


@pytest.mark.parametrize("char", ["%00", "%0A", "%7F", "%C2%85"])
async def test_a_path_that_becomes_a_name_refuses_control_characters(
    admin_world: AdminWorld, char: str
) -> None:
    """PUT's path is the username or client_id when it is not an id."""
    reply = await admin_world.admin("PUT", f"/consumers/a{char}b", json={})
    assert reply.status == 400
    schema_violation(reply.body, {"username": CONTROL})
    reply = await admin_world.admin("PUT", f"/consumers/Other/oauth2/a{char}b", json={"name": "n"})
    assert reply.status == 400
    schema_violation(reply.body, {"client_id": CONTROL})


async def test_a_token_scope_patch_refuses_control_characters(admin_world: AdminWorld) -> None:
    minted = await admin_world.admin(
        "POST", "/oauth2_tokens", json={"credential": "clientid", "expires_in": 60}
    )
    assert minted.status == 201
    path = f"/oauth2_tokens/{minted.body['id']}"
    await _refused(admin_world, "PATCH", path, {"scope": "read\nwrite"}, "scope", CONTROL)
    assert (await _get(admin_world, path))["scope"] is None


async def test_the_seed_refuses_what_the_admin_api_refuses(
    gateway: GatewayFactory, backend: Backend
) -> None:
    taken = str(uuid.uuid4())
    seed = [
        {
            "username": taken,
            "custom_id": "a\x00b",
            "oauth2": [
                {"name": "A", "client_id": taken.upper(), "client_secret": "s"},
                {"name": "B", "client_id": "b\x7f", "client_secret": "s"},
            ],
        },
        {"username": "c\u0085", "custom_id": str(uuid.uuid4())},
    ]
    with pytest.raises(ConfigError) as info:
        await gateway([events_service(backend)], consumers=seed)
    assert {tuple(line.split(": ", 2)[1:]) for line in info.value.problems} == {
        ("consumers[0].username", UUID_SHAPED),
        ("consumers[0].custom_id", CONTROL),
        ("consumers[0].oauth2[0].client_id", UUID_SHAPED),
        ("consumers[0].oauth2[1].client_id", CONTROL),
        ("consumers[1].username", CONTROL),
    }


# C. malformed text --------------------------------------------------------------------------
async def test_text_that_is_not_utf8_is_a_400(admin_world: AdminWorld) -> None:
    """aiohttp keeps an escape that does not decode as UTF-8 as literal text: a PUT to
    /consumers/%ED%A0%80 made a consumer named "%ED%A0%80", a form body's bad bytes became
    U+FFFD; now both are refused, in the admin API's `{"message"}` shape."""
    w = admin_world
    for method, target in (
        ("PUT", "/consumers/%ED%A0%80"),
        ("GET", "/consumers/%ED%A0%80"),
        ("DELETE", "/consumers/%FF"),
        ("PUT", "/consumers/Other/oauth2/%ED%A0%80"),
        ("GET", "/consumers?tags=%FF"),
        ("GET", "/consumers?offset=%ED%A0%80"),
        ("GET", "/oauth2?size=10&tags=a%C3"),
        ("GET", "/oauth2_tokens?authenticated_userid=%ED%A0%80"),
        ("DELETE", "/oauth2_tokens?authenticated_userid=%FF"),
        ("GET", "/default/oauth2_tokens/%ED%A0%80"),
    ):
        reply = await w.admin(method, target, json={"name": "n"})
        assert (reply.status, reply.body) == (400, NOT_UTF8_TARGET), (method, target)
    for raw in (b"username=%ED%A0%80", b"username=\xff", b"username=ok&tags=%FF"):
        reply = await w.admin("POST", "/consumers", data=raw, headers=FORM)
        assert (reply.status, reply.body) == (400, NOT_UTF8_FORM), raw
    reply = await w.admin("POST", "/consumers", data=b'{"username":"\\ud800"}')
    assert reply.status == 400
    assert reply.body["message"].startswith("Cannot parse JSON body")
    names = {consumer["username"] for consumer in (await _get(w, "/consumers"))["data"]}
    assert names == {"ClientApp", "Other"}
