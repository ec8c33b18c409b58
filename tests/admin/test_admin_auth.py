"""Admin authentication (design §6): the admin token by `Authorization: Bearer` or
`Kong-Admin-Token`, anything else 401; the admin API is never on the proxy listener."""

from __future__ import annotations

import base64
import stat

import aiohttp
import pytest

from tests.admin.conftest import UNAUTHORIZED, AdminWorld, call


async def _anonymous(
    world: AdminWorld, path: str, headers: dict[str, str], method: str = "GET"
) -> int:
    async with aiohttp.ClientSession() as session:
        reply = await call(session, method, world.gw.admin_url + path, headers=headers)
    if reply.status == 401:
        assert reply.body == UNAUTHORIZED
        assert reply.headers["Content-Type"].startswith("application/json")
    return reply.status


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "wrong",
        "swapped-case",
        "basic",
        "basic-user-pass",
        "bearer-empty",
        "kong-wrong",
        "kong-empty",
        "prefix-of-token",
        "token-plus-char",
    ],
)
async def test_bad_credentials_are_401(admin_world: AdminWorld, case: str) -> None:
    token = admin_world.gw.admin_token
    assert token.swapcase() != token
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer " + "x" * len(token)},
        "swapped-case": {"Authorization": f"Bearer {token.swapcase()}"},
        "basic": {"Authorization": f"Basic {token}"},
        "basic-user-pass": {
            "Authorization": "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()
        },
        "bearer-empty": {"Authorization": "Bearer "},
        "kong-wrong": {"Kong-Admin-Token": token.swapcase()},
        "kong-empty": {"Kong-Admin-Token": ""},
        "prefix-of-token": {"Authorization": f"Bearer {token[:-1]}"},
        "token-plus-char": {"Authorization": f"Bearer {token}x"},
    }[case]
    assert await _anonymous(admin_world, "/consumers", headers) == 401


@pytest.mark.parametrize("name", ["token", "access_token", "kong_admin_token", "apikey"])
async def test_token_in_query_is_401(admin_world: AdminWorld, name: str) -> None:
    token = admin_world.gw.admin_token
    assert await _anonymous(admin_world, f"/consumers?{name}={token}", {}) == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/consumers"),
        ("DELETE", "/consumers/ClientApp"),
        ("DELETE", "/oauth2_tokens?authenticated_userid=1"),
        ("GET", "/oauth2_tokens"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/default/consumers"),
        ("GET", "/no/such/path"),
        ("GET", "/other/consumers"),
    ],
)
async def test_every_path_needs_the_token(admin_world: AdminWorld, method: str, path: str) -> None:
    assert await _anonymous(admin_world, path, {}, method) == 401
    # ...and nothing was changed by the refused calls
    reply = await admin_world.admin("GET", "/consumers/ClientApp")
    assert reply.status == 200


@pytest.mark.parametrize(
    "header",
    [
        ("Authorization", "Bearer {}"),
        ("Authorization", "bearer {}"),
        ("Authorization", "BEARER {}"),
        ("Kong-Admin-Token", "{}"),
        ("kong-admin-token", "{}"),
    ],
)
async def test_bearer_and_kong_admin_token_work(
    admin_world: AdminWorld, header: tuple[str, str]
) -> None:
    name, template = header
    headers = {name: template.format(admin_world.gw.admin_token)}
    async with aiohttp.ClientSession() as session:
        reply = await call(session, "GET", admin_world.gw.admin_url + "/consumers", headers=headers)
    assert reply.status == 200
    usernames = [c["username"] for c in reply.body["data"]]
    assert sorted(usernames) == ["ClientApp", "Other"]


@pytest.mark.parametrize(
    "path",
    [
        "/consumers",
        "/consumers/ClientApp",
        "/oauth2",
        "/oauth2_tokens",
        "/status",
        "/metrics",
        "/services",
        "/default/consumers",
    ],
)
async def test_admin_paths_are_absent_from_the_proxy_listener(
    admin_world: AdminWorld, path: str
) -> None:
    reply = await call(
        admin_world.proxy, "GET", admin_world.gw.url + path, headers=admin_world.gw.admin_headers
    )
    assert reply.status == 404
    assert reply.body == {"message": "no Route matched with those values"}
    reply = await call(
        admin_world.proxy,
        "POST",
        admin_world.gw.url + "/consumers",
        json={"username": "via-proxy"},
        headers=admin_world.gw.admin_headers,
    )
    assert reply.status == 404
    assert (await admin_world.admin("GET", "/consumers/via-proxy")).status == 404


async def test_token_file_is_created_0600(admin_world: AdminWorld) -> None:
    path = admin_world.gw.settings.admin.token_file
    mode = path.stat().st_mode
    assert stat.S_ISREG(mode)
    assert stat.S_IMODE(mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 43  # 256 bits, url-safe base64
    assert path.read_text() == token + "\n"
