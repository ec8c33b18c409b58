"""Token revocation (RFC 7009) and introspection (RFC 7662) over real HTTPS (design §4.3).

Clients authenticate as at the token endpoint and may act only on their own tokens; revoking
either half of a pair revokes the family; someone else's token looks exactly like an unknown
one. Tokens come from the password grant (and client_credentials where no user is wanted).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from tests.conftest import Backend, Clock, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

OTHER_SECRET = "other-secret"
REPORTS_KEY = "pk-" + "r" * 40
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
INVALID_TOKEN_CHALLENGE = (
    'Bearer realm="edgeauth", error="invalid_token", '
    'error_description="The access token is invalid or has expired"'
)
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client authentication"}
INVALID_REFRESH = {"error": "invalid_grant", "error_description": "Invalid refresh_token"}
MISSING_TOKEN = {"error": "invalid_request", "error_description": "Missing token parameter"}
INACTIVE = {"active": False}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: dict[str, Any]


async def post(
    client: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> Answer:
    """One OAuth endpoint request; asserts the headers of every such answer (design §4)."""
    async with client.request(method, url, data=dict(params), headers=headers) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"] == "application/json", raw
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        body = orjson.loads(raw)
        assert isinstance(body, dict)
        return Answer(resp.status, resp.headers, body)


def me(client_id: str = "clientid", secret: str = SECRET) -> dict[str, str]:
    return {"client_id": client_id, "client_secret": secret}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def login(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    *,
    userid: str = "1",
    scope: str | None = "read write",
    prefix: str = "/events",
    provision_key: str = PROVISION_KEY,
) -> tuple[str, str]:
    """(access, refresh) from the password grant of ClientApp's SampleApp."""
    params = {
        **me(),
        "grant_type": "password",
        "provision_key": provision_key,
        "authenticated_userid": userid,
    }
    if scope is not None:
        params["scope"] = scope
    answer = await post(client, f"{gw.url}{prefix}/oauth2/token", params)
    assert answer.status == 200, answer.body
    return answer.body["access_token"], answer.body["refresh_token"]


async def revoke(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> Answer:
    return await post(client, f"{gw.url}/events/oauth2/revoke", params, headers)


async def introspect(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    token: str,
    creds: Mapping[str, str] | None = None,
    **extra: str,
) -> dict[str, Any]:
    params = {**(me() if creds is None else creds), "token": token, **extra}
    answer = await post(client, f"{gw.url}/events/oauth2/introspect", params)
    assert answer.status == 200, answer.body
    return answer.body


async def api_status(client: aiohttp.ClientSession, gw: RunningGateway, token: str) -> int:
    async with client.get(
        f"{gw.url}/events/echo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        if resp.status == 401:
            assert await resp.json() == INVALID_TOKEN
            assert resp.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
        return resp.status


async def refresh_with(client: aiohttp.ClientSession, gw: RunningGateway, refresh: str) -> Answer:
    params = {**me(), "grant_type": "refresh_token", "refresh_token": refresh}
    return await post(client, f"{gw.url}/events/oauth2/token", params)


async def owner(
    client: aiohttp.ClientSession, gw: RunningGateway, username: str = "ClientApp"
) -> dict[str, Any]:
    """`{"id", "username"}` of a consumer, as the admin API has it."""
    url = f"{gw.admin_url}/consumers/{username}"
    async with client.get(url, headers=gw.admin_headers) as resp:
        assert resp.status == 200
        found = await resp.json()
    return {"id": found["id"], "username": found["username"]}


@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    return await gateway([events_service(backend)], consumers=consumers(tmp_path))


# revocation -------------------------------------------------------------------------------
async def test_revoking_the_refresh_token_kills_its_access_token(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, refresh = await login(client, gw)
    assert await api_status(client, gw, access) == 200  # cached as valid
    answer = await revoke(
        client, gw, {**me(), "token": refresh, "token_type_hint": "refresh_token"}
    )
    assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, access) == 401
    answer = await refresh_with(client, gw, refresh)
    assert (answer.status, answer.body) == (400, INVALID_REFRESH)


async def test_revoking_the_access_token_kills_its_refresh_token(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, refresh = await login(client, gw)
    assert await api_status(client, gw, access) == 200
    answer = await revoke(client, gw, {"token": access}, basic("clientid", SECRET))
    assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, access) == 401
    answer = await refresh_with(client, gw, refresh)
    assert (answer.status, answer.body) == (400, INVALID_REFRESH)


async def test_a_wrong_token_type_hint_is_only_a_hint(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, _ = await login(client, gw)
    answer = await revoke(client, gw, {**me(), "token": access, "token_type_hint": "refresh_token"})
    assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, access) == 401
    _, refresh = await login(client, gw)
    answer = await revoke(client, gw, {**me(), "token": refresh, "token_type_hint": "access_token"})
    assert (answer.status, answer.body) == (200, {})
    assert (await refresh_with(client, gw, refresh)).status == 400


async def test_revoking_a_rotated_pair_reaches_the_whole_family(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    _, first_refresh = await login(client, gw)
    rotated = await refresh_with(client, gw, first_refresh)
    assert rotated.status == 200
    new_access, new_refresh = rotated.body["access_token"], rotated.body["refresh_token"]
    assert await api_status(client, gw, new_access) == 200
    # The old, already rotated refresh token still names the family.
    answer = await revoke(client, gw, {**me(), "token": first_refresh})
    assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, new_access) == 401
    assert (await refresh_with(client, gw, new_refresh)).body == INVALID_REFRESH


async def test_revoking_an_unknown_or_revoked_token_is_200(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for token in ("no-such-token-" + "x" * 30, "x"):
        answer = await revoke(client, gw, {**me(), "token": token})
        assert (answer.status, answer.body) == (200, {})
    access, _ = await login(client, gw)
    for _ in range(2):
        answer = await revoke(client, gw, {**me(), "token": access})
        assert (answer.status, answer.body) == (200, {})


async def test_another_clients_token_is_not_revoked(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, refresh = await login(client, gw)
    for token in (access, refresh):
        answer = await revoke(client, gw, {**me("otherclient", OTHER_SECRET), "token": token})
        assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, access) == 200
    assert (await refresh_with(client, gw, refresh)).status == 200


async def test_revoke_without_token_is_invalid_request(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for params in (me(), {**me(), "token": ""}):
        answer = await revoke(client, gw, params)
        assert (answer.status, answer.body) == (400, MISSING_TOKEN)


async def test_revoke_needs_an_authenticated_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, _ = await login(client, gw)
    for params in (
        {"token": access},
        {**me(secret="wrong-secret-1"), "token": access},
        {**me("nobody"), "token": access},
        {"client_id": "clientid", "token": access},  # confidential client without its secret
        me("wrong", "secret"),  # client checked before the token parameter (design §4.6)
    ):
        answer = await revoke(client, gw, params)
        assert (answer.status, answer.body) == (400, INVALID_CLIENT), params
        assert "WWW-Authenticate" not in answer.headers
    answer = await revoke(client, gw, {"token": access}, basic("clientid", "wrong-secret-1"))
    assert (answer.status, answer.body) == (401, INVALID_CLIENT)
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="edgeauth"'
    assert await api_status(client, gw, access) == 200


@pytest.mark.parametrize("endpoint", ["revoke", "introspect"])
async def test_other_methods_are_405(
    gw: RunningGateway, client: aiohttp.ClientSession, endpoint: str
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = await post(client, f"{gw.url}/events/oauth2/{endpoint}", {}, method=method)
        assert (answer.status, answer.body) == (
            405,
            {
                "error": "invalid_method",
                "error_description": "The HTTP method is not allowed for this endpoint",
            },
        )
        assert answer.headers["Allow"] == "POST"


async def test_a_public_client_revokes_its_own_token_with_its_id_alone(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    params = {
        "client_id": "publicclient",
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    issued = await post(client, f"{gw.url}/events/oauth2/token", params)
    assert issued.status == 200, issued.body
    access = issued.body["access_token"]
    answer = await revoke(client, gw, {"client_id": "publicclient", "token": access})
    assert (answer.status, answer.body) == (200, {})
    assert await api_status(client, gw, access) == 401


# introspection ----------------------------------------------------------------------------
async def test_introspect_an_active_access_token(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    before = int(time.time())
    access, _ = await login(client, gw)
    after = int(time.time()) + 1
    body = await introspect(client, gw, access)
    iat, exp = body.pop("iat"), body.pop("exp")
    assert body == {
        "active": True,
        "scope": "read write",
        "client_id": "clientid",
        "username": "1",  # the resource owner (RFC 7662 §2.2), not the client's owner
        "consumer": await owner(client, gw),
        "token_type": "bearer",
        "sub": "1",
        "aud": "events",
    }
    assert isinstance(iat, int)
    assert isinstance(exp, int)
    assert before <= iat <= after
    assert exp - iat in (7199, 7200)
    # Client authentication by Basic works the same.
    answer = await post(
        client, f"{gw.url}/events/oauth2/introspect", {"token": access}, basic("clientid", SECRET)
    )
    assert answer.status == 200
    assert answer.body["active"] is True


async def test_introspect_without_user_has_the_client_as_subject(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    params = {**me(), "grant_type": "client_credentials", "scope": "read"}
    issued = await post(client, f"{gw.url}/events/oauth2/token", params)
    assert issued.status == 200
    body = await introspect(client, gw, issued.body["access_token"])
    assert body["sub"] == "clientid"
    assert body["scope"] == "read"
    assert body["token_type"] == "bearer"
    assert "username" not in body  # no resource owner
    assert body["consumer"] == await owner(client, gw)


async def test_introspect_a_refresh_token(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    _, refresh = await login(client, gw)
    body = await introspect(client, gw, refresh, token_type_hint="refresh_token")
    iat, exp = body.pop("iat"), body.pop("exp")
    assert body == {
        "active": True,
        "scope": "read write",
        "client_id": "clientid",
        "username": "1",
        "consumer": await owner(client, gw),
        "token_type": "refresh_token",
        "sub": "1",
        "aud": "events",
    }
    assert exp - iat in (1209599, 1209600)  # refresh_token_ttl default
    # Without the hint it is found as well.
    assert (await introspect(client, gw, refresh))["token_type"] == "refresh_token"


async def test_a_refresh_token_is_introspected_with_the_scope_it_refreshes_to(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """After a narrowing refresh the access token carries the narrow scope and its refresh
    token still the grant's (RFC 6749 §6): introspection tells each one's own."""
    _, first = await login(client, gw)
    params = {**me(), "grant_type": "refresh_token", "refresh_token": first, "scope": "read"}
    answer = await post(client, f"{gw.url}/events/oauth2/token", params)
    assert answer.status == 200, answer.body
    access, refresh = answer.body["access_token"], answer.body["refresh_token"]
    assert (await introspect(client, gw, access))["scope"] == "read"
    assert (await introspect(client, gw, refresh))["scope"] == "read write"


async def test_introspect_expired_token_is_inactive(
    gateway: GatewayFactory,
    backend: Backend,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    clock: Clock,
) -> None:
    gw = await gateway([events_service(backend, token_expiration=1)], consumers=consumers(tmp_path))
    access, refresh = await login(client, gw)
    assert (await introspect(client, gw, access))["active"] is True
    clock.advance(2)
    assert await introspect(client, gw, access) == INACTIVE
    # Its refresh token outlives it, and still names the user and the consumer.
    body = await introspect(client, gw, refresh)
    assert (body["active"], body["token_type"], body["username"], body["sub"]) == (
        True,
        "refresh_token",
        "1",
        "1",
    )
    assert body["consumer"] == await owner(client, gw)


async def test_introspect_revoked_unknown_and_foreign_tokens_are_inactive(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    access, refresh = await login(client, gw)
    other = me("otherclient", OTHER_SECRET)
    assert await introspect(client, gw, access, other) == INACTIVE
    assert await introspect(client, gw, refresh, other) == INACTIVE
    assert await introspect(client, gw, "no-such-token-" + "y" * 30) == INACTIVE
    assert (await introspect(client, gw, access))["active"] is True  # still alive
    answer = await revoke(client, gw, {**me(), "token": access})
    assert answer.status == 200
    assert await introspect(client, gw, access) == INACTIVE
    assert await introspect(client, gw, refresh) == INACTIVE


async def test_introspect_a_token_of_another_service_is_inactive(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    reports_policy: dict[str, Any] = {
        "scopes": ["read", "write"],
        "provision_key": REPORTS_KEY,
        "enable_password_grant": True,
    }
    reports = service(
        "reports", backend.url + "/api", ["/reports"], strip_path=False, oauth2=reports_policy
    )
    gw = await gateway([events_service(backend), reports], consumers=consumers(tmp_path))
    access, _ = await login(client, gw, prefix="/reports", provision_key=REPORTS_KEY)
    assert await introspect(client, gw, access) == INACTIVE
    answer = await post(client, f"{gw.url}/reports/oauth2/introspect", {**me(), "token": access})
    assert answer.body["aud"] == "reports"


async def test_introspect_needs_a_token_and_a_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    url = f"{gw.url}/events/oauth2/introspect"
    answer = await post(client, url, me())
    assert (answer.status, answer.body) == (400, MISSING_TOKEN)
    access, _ = await login(client, gw)
    answer = await post(client, url, {**me(secret="wrong-secret-1"), "token": access})
    assert (answer.status, answer.body) == (400, INVALID_CLIENT)
    answer = await post(client, url, {"token": access})
    assert (answer.status, answer.body) == (400, INVALID_CLIENT)
