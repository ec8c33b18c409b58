"""Refresh tokens over real HTTPS (design §4.1 "Refresh", §7 storage, RFC 9700 §4.14.2).

Rotation retires the old pair at once; presenting a rotated refresh token revokes its whole
family; refresh tokens are bound to their client and service; scope may only narrow;
`reuse_refresh_token` keeps the refresh token; concurrent refreshes have one winner; and the
store never holds a raw token or secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from tests.conftest import Backend, Clock, GatewayFactory, service
from tests.oauth.conftest import PROVISION_KEY, SECRET, OAuthWorld, consumers, events_service

USERID = "user-4711"
INVALID_REFRESH = {"error": "invalid_grant", "error_description": "Invalid refresh_token"}
EXPIRED_REFRESH = {"error": "invalid_grant", "error_description": "The refresh_token has expired"}
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
INVALID_TOKEN_CHALLENGE = (
    'Bearer realm="edgeauth", error="invalid_token", '
    'error_description="The access token is invalid or has expired"'
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    body: dict[str, Any]


async def post(client: aiohttp.ClientSession, url: str, params: Mapping[str, str]) -> Answer:
    """A form-encoded token request; asserts the headers of every OAuth answer (design §4)."""
    async with client.post(url, data=dict(params)) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"] == "application/json", raw
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        body = orjson.loads(raw)
        assert isinstance(body, dict)
        return Answer(resp.status, resp.headers, raw, body)


def assert_refused(answer: Answer, expected: Mapping[str, str], *secrets: str) -> None:
    assert (answer.status, answer.body) == (400, expected), answer.raw
    assert "WWW-Authenticate" not in answer.headers
    for secret in secrets:
        assert secret not in answer.raw.decode()


def assert_pair(answer: Answer, scope: str | None = None) -> tuple[str, str]:
    """A full success body (design §4.1); returns (access_token, refresh_token)."""
    members = {"access_token", "token_type", "expires_in", "refresh_token"}
    assert answer.status == 200, answer.raw
    assert set(answer.body) == (members | {"scope"} if scope else members), answer.body
    assert answer.body["token_type"] == "bearer"
    assert answer.body["expires_in"] == 7200
    if scope:
        assert answer.body["scope"] == scope
    return answer.body["access_token"], answer.body["refresh_token"]


def login(client_id: str = "clientid", secret: str = SECRET, **extra: str) -> dict[str, str]:
    return {
        "client_id": client_id,
        "client_secret": secret,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        **extra,
    }


def refresh(
    token: str, client_id: str = "clientid", secret: str = SECRET, **extra: str
) -> dict[str, str]:
    return {
        "client_id": client_id,
        "client_secret": secret,
        "grant_type": "refresh_token",
        "refresh_token": token,
        **extra,
    }


async def api_call(client: aiohttp.ClientSession, url: str, access_token: str) -> dict[str, str]:
    """A proxied call that must succeed; returns the headers the backend saw."""
    async with client.get(f"{url}/echo", headers={"Authorization": f"Bearer {access_token}"}) as r:
        assert r.status == 200, await r.read()
        echo = await r.json()
    return {str(k).lower(): str(v) for k, v in echo["headers"]}


async def assert_dead(client: aiohttp.ClientSession, url: str, access_token: str) -> None:
    """A proxied call with `access_token` is refused as design §4.5 says."""
    async with client.get(f"{url}/echo", headers={"Authorization": f"Bearer {access_token}"}) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
        assert r.headers["Content-Type"] == "application/json"
        assert await r.json() == INVALID_TOKEN


async def start_world(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **oauth2: Any
) -> OAuthWorld:
    gw = await gateway([events_service(backend, **oauth2)], consumers=consumers(tmp_path))
    return OAuthWorld(gw, backend)


# rotation --------------------------------------------------------------------------------
async def test_refresh_rotates_the_pair(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    access, refresh_token = assert_pair(
        await post(client, world.token_url, login(scope="read write")), "read write"
    )
    new_access, new_refresh = assert_pair(
        await post(client, world.token_url, refresh(refresh_token)), "read write"
    )
    assert len({access, refresh_token, new_access, new_refresh}) == 4

    await assert_dead(client, world.api_url, access)
    seen = await api_call(client, world.api_url, new_access)
    assert seen["x-authenticated-userid"] == USERID  # carried over from the original grant
    assert seen["x-authenticated-scope"] == "read write"

    again = await post(client, world.token_url, refresh(refresh_token))
    assert_refused(again, INVALID_REFRESH, refresh_token)


async def test_replayed_refresh_token_revokes_the_family(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    _, first_refresh = assert_pair(await post(client, world.token_url, login()))
    _, second_refresh = assert_pair(await post(client, world.token_url, refresh(first_refresh)))
    newest_access, newest_refresh = assert_pair(
        await post(client, world.token_url, refresh(second_refresh))
    )
    await api_call(client, world.api_url, newest_access)  # alive (and now cached)

    # another family of the same client must survive the revocation
    other_access, _ = assert_pair(await post(client, world.token_url, login()))

    replay = await post(client, world.token_url, refresh(first_refresh))
    assert_refused(replay, INVALID_REFRESH, first_refresh)

    await assert_dead(client, world.api_url, newest_access)
    assert_refused(await post(client, world.token_url, refresh(newest_refresh)), INVALID_REFRESH)
    await api_call(client, world.api_url, other_access)


async def test_refresh_by_another_client_is_invalid_grant(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    access, refresh_token = assert_pair(await post(client, world.token_url, login()))
    stolen = await post(
        client, world.token_url, refresh(refresh_token, "otherclient", "other-secret")
    )
    assert_refused(stolen, INVALID_REFRESH, refresh_token)

    # the owner's pair is untouched by the foreign attempt
    await api_call(client, world.api_url, access)
    assert_pair(await post(client, world.token_url, refresh(refresh_token)))


async def test_refresh_by_public_client_of_same_consumer_is_invalid_grant(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    _, refresh_token = assert_pair(await post(client, world.token_url, login()))
    params = {"client_id": "publicclient", "grant_type": "refresh_token"}
    answer = await post(client, world.token_url, {**params, "refresh_token": refresh_token})
    assert_refused(answer, INVALID_REFRESH, refresh_token)


async def test_unknown_and_missing_refresh_token(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    unknown = "u" * 43
    assert_refused(await post(client, world.token_url, refresh(unknown)), INVALID_REFRESH, unknown)
    missing = await post(client, world.token_url, refresh(""))
    assert_refused(
        missing,
        {"error": "invalid_request", "error_description": "Missing refresh_token parameter"},
    )


async def test_access_token_is_not_a_refresh_token(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    access, _ = assert_pair(await post(client, world.token_url, login()))
    assert_refused(await post(client, world.token_url, refresh(access)), INVALID_REFRESH, access)
    await api_call(client, world.api_url, access)


# scope -----------------------------------------------------------------------------------
async def test_refresh_may_narrow_the_scope(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    _, refresh_token = assert_pair(
        await post(client, world.token_url, login(scope="read write")), "read write"
    )
    access, _ = assert_pair(
        await post(client, world.token_url, refresh(refresh_token, scope="read")), "read"
    )
    seen = await api_call(client, world.api_url, access)
    assert seen["x-authenticated-scope"] == "read"


async def test_a_narrower_refresh_keeps_the_grants_scope_for_the_next_refresh(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    """RFC 6749 §6: the new refresh token has the original grant's scope; only the access
    token narrows (issue 13, point 10)."""
    _, first = assert_pair(
        await post(client, world.token_url, login(scope="read write")), "read write"
    )
    narrow, second = assert_pair(
        await post(client, world.token_url, refresh(first, scope="read")), "read"
    )
    assert (await api_call(client, world.api_url, narrow))["x-authenticated-scope"] == "read"
    wide, third = assert_pair(
        await post(client, world.token_url, refresh(second, scope="read write")), "read write"
    )
    assert (await api_call(client, world.api_url, wide))["x-authenticated-scope"] == "read write"
    # Narrowed twice in a row, then no scope asked: the grant's scope again.
    _, fourth = assert_pair(
        await post(client, world.token_url, refresh(third, scope="read")), "read"
    )
    _, fifth = assert_pair(
        await post(client, world.token_url, refresh(fourth, scope="write")), "write"
    )
    assert_pair(await post(client, world.token_url, refresh(fifth)), "read write")


async def test_an_operators_scope_change_binds_the_next_refresh(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    """After a narrowing refresh, an admin PATCH of the scope replaces the grant's scope too:
    the next refresh cannot bring back what the operator took away."""
    _, first = assert_pair(
        await post(client, world.token_url, login(scope="read write")), "read write"
    )
    narrow, second = assert_pair(
        await post(client, world.token_url, refresh(first, scope="read")), "read"
    )
    async with client.patch(
        f"{world.gw.admin_url}/oauth2_tokens/{narrow}",
        json={"scope": "read"},
        headers=world.gw.admin_headers,
    ) as resp:
        assert resp.status == 200, await resp.text()
    assert_pair(await post(client, world.token_url, refresh(second)), "read")


async def test_refresh_may_not_widen_the_scope(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    _, refresh_token = assert_pair(await post(client, world.token_url, login(scope="read")), "read")
    wider = await post(client, world.token_url, refresh(refresh_token, scope="read write"))
    assert_refused(
        wider,
        {
            "error": "invalid_scope",
            "error_description": "The requested scope exceeds the scope originally granted",
        },
        refresh_token,
    )
    # refused before rotation: the refresh token still works, with its original scope
    assert_pair(await post(client, world.token_url, refresh(refresh_token)), "read")


# reuse_refresh_token ---------------------------------------------------------------------
async def test_reuse_refresh_token_keeps_it(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    world = await start_world(gateway, backend, tmp_path, reuse_refresh_token=True)
    first_access, refresh_token = assert_pair(await post(client, world.token_url, login()))

    second_access, same = assert_pair(await post(client, world.token_url, refresh(refresh_token)))
    assert same == refresh_token
    assert second_access != first_access
    await assert_dead(client, world.api_url, first_access)
    seen = await api_call(client, world.api_url, second_access)
    assert seen["x-authenticated-userid"] == USERID

    third_access, same_again = assert_pair(
        await post(client, world.token_url, refresh(refresh_token))
    )
    assert same_again == refresh_token
    assert third_access not in {first_access, second_access}
    await assert_dead(client, world.api_url, second_access)
    await api_call(client, world.api_url, third_access)


async def test_reuse_refresh_token_refuses_a_scope_change(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """With a reused refresh token one row holds both tokens: narrowing the access token
    would narrow the refresh token too (RFC 6749 §6), so a scope change is refused."""
    world = await start_world(gateway, backend, tmp_path, reuse_refresh_token=True)
    access, refresh_token = assert_pair(
        await post(client, world.token_url, login(scope="read write")), "read write"
    )
    answer = await post(client, world.token_url, refresh(refresh_token, scope="read"))
    assert_refused(
        answer,
        {
            "error": "invalid_scope",
            "error_description": "The scope cannot change when refresh tokens are reused",
        },
        refresh_token,
    )
    # nothing was replaced: the refresh token and its access token still work
    await api_call(client, world.api_url, access)
    renewed, same = assert_pair(
        await post(client, world.token_url, refresh(refresh_token)), "read write"
    )
    assert same == refresh_token
    seen = await api_call(client, world.api_url, renewed)
    assert seen["x-authenticated-scope"] == "read write"


# refresh_token_ttl -----------------------------------------------------------------------
async def test_refresh_token_ttl(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    clock: Clock,
) -> None:
    world = await start_world(gateway, backend, tmp_path, refresh_token_ttl=1)
    access, refresh_token = assert_pair(await post(client, world.token_url, login()))
    clock.advance(2.0)
    expired = await post(client, world.token_url, refresh(refresh_token))
    assert_refused(expired, EXPIRED_REFRESH, refresh_token)
    await api_call(client, world.api_url, access)  # the access token lives on its own TTL


# concurrency -----------------------------------------------------------------------------
async def test_concurrent_refreshes_have_exactly_one_winner(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    _, refresh_token = assert_pair(await post(client, world.token_url, login()))
    answers = await asyncio.gather(
        *(post(client, world.token_url, refresh(refresh_token)) for _ in range(50))
    )
    winners = [a for a in answers if a.status == 200]
    losers = [a for a in answers if a.status != 200]
    assert len(winners) == 1, [a.raw for a in winners]
    assert_pair(winners[0])
    assert len(losers) == 49
    for answer in losers:
        assert_refused(answer, INVALID_REFRESH, refresh_token)


# service binding -------------------------------------------------------------------------
async def test_refresh_token_bound_to_its_service(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    reports_key = "pk-reports-" + "r" * 32
    reports = service(
        "reports",
        backend.url + "/api",
        ["/reports"],
        strip_path=False,
        oauth2={
            "scopes": ["read", "write"],
            "provision_key": reports_key,
            "enable_password_grant": True,
        },
    )
    gw = await gateway([events_service(backend), reports], consumers=consumers(tmp_path))
    events = OAuthWorld(gw, backend)
    reports_token_url = f"{gw.url}/reports/oauth2/token"

    access, refresh_token = assert_pair(await post(client, events.token_url, login()))
    elsewhere = await post(client, reports_token_url, refresh(refresh_token))
    assert_refused(elsewhere, INVALID_REFRESH, refresh_token)
    await assert_dead(client, f"{gw.url}/reports", access)

    # the token still belongs to, and works on, its own service
    await api_call(client, events.api_url, access)
    assert_pair(await post(client, events.token_url, refresh(refresh_token)))
    # and the second service issues and refreshes its own
    _, own_refresh = assert_pair(
        await post(client, reports_token_url, login(provision_key=reports_key))
    )
    assert_pair(await post(client, reports_token_url, refresh(own_refresh)))


# storage ---------------------------------------------------------------------------------
async def test_store_holds_no_raw_token_or_secret(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    raw: list[str] = []
    access, refresh_token = assert_pair(await post(client, world.token_url, login()))
    raw += [access, refresh_token]
    raw += assert_pair(await post(client, world.token_url, refresh(refresh_token)))
    cc = await post(
        client,
        world.token_url,
        {"client_id": "clientid", "client_secret": SECRET, "grant_type": "client_credentials"},
    )
    assert cc.status == 200, cc.raw
    raw.append(cc.body["access_token"])
    await api_call(client, world.api_url, raw[-1])

    path = Path(world.gw.settings.store.path)
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    contents = b"".join(p.read_bytes() for p in files)
    assert len(contents) > 0
    for value in [*raw, SECRET, "other-secret", PROVISION_KEY]:
        assert value.encode() not in contents, f"{value[:6]}... found in {[p.name for p in files]}"


async def test_client_credentials_token_cannot_be_refreshed(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    cc = await post(
        client,
        world.token_url,
        {"client_id": "clientid", "client_secret": SECRET, "grant_type": "client_credentials"},
    )
    assert cc.status == 200, cc.raw
    assert "refresh_token" not in cc.body
    access = cc.body["access_token"]
    assert_refused(await post(client, world.token_url, refresh(access)), INVALID_REFRESH, access)
