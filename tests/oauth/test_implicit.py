"""The implicit grant, `response_type=token` (design §2 enable_implicit_grant, §4.2, §4.6).

Kong's answer: 200 `{"redirect_uri": "<uri>#access_token=...&token_type=bearer&expires_in=..."}`;
errors after the redirect URI is known travel in the fragment too, for response_type=token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import orjson
import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
USERID = "user-4711"
STATE = "xyz"
CALLBACK = "https://app.example/callback"
MOBILE = "https://mobile.example/cb"
QUERY_URI = "https://multi.example/cb?tenant=acme"
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}


async def authorize(
    client: aiohttp.ClientSession, gw: RunningGateway, **overrides: str | None
) -> tuple[int, dict[str, Any]]:
    """POST the authorize endpoint; asserts the headers every OAuth answer carries (§4)."""
    base: dict[str, str | None] = {
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        "client_id": "clientid",
        "response_type": "token",
        "state": STATE,
    }
    params = {k: v for k, v in {**base, **overrides}.items() if v is not None}
    async with client.post(f"{gw.url}/events/oauth2/authorize", data=params) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"] == "application/json", raw
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        assert "WWW-Authenticate" not in resp.headers
        body = orjson.loads(raw)
        assert isinstance(body, dict)
        return resp.status, body


def fragment_of(body: Mapping[str, Any], base: str) -> dict[str, str]:
    """The fragment parameters of a `{"redirect_uri": ...}` answer, base URI checked exactly."""
    assert set(body) == {"redirect_uri"}, body
    uri = body["redirect_uri"]
    head, sep, fragment = uri.partition("#")
    assert (head, sep) == (base, "#"), uri
    pairs = parse_qsl(fragment, keep_blank_values=True, strict_parsing=True)
    assert uri == f"{base}#{urlencode(pairs)}"
    params = dict(pairs)
    assert len(params) == len(pairs), "a parameter appears twice"
    return params


async def call_api(
    client: aiohttp.ClientSession, gw: RunningGateway, token: str
) -> tuple[int, dict[str, Any]]:
    async with client.get(
        f"{gw.url}/events/echo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        body = await resp.json()
        assert isinstance(body, dict)
        return resp.status, body


def identity(echo: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in echo["headers"] if str(k).lower().startswith("x-")}


async def start(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **oauth2: Any
) -> RunningGateway:
    everyone = consumers(tmp_path)
    everyone[0]["oauth2"].append(
        {
            "name": "QueryApp",
            "client_id": "queryclient",
            "client_secret": "query-secret-77",
            "redirect_uris": [QUERY_URI],
        }
    )
    return await gateway([events_service(backend, **oauth2)], consumers=everyone)


@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    return await start(gateway, backend, tmp_path, enable_implicit_grant=True)


async def test_implicit_puts_the_token_in_the_fragment(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, scope="read", redirect_uri=CALLBACK)
    assert status == 200, body
    params = fragment_of(body, CALLBACK)
    token = params.pop("access_token")
    assert TOKEN_SHAPE.fullmatch(token)
    assert params == {"token_type": "bearer", "expires_in": "7200", "scope": "read", "state": STATE}
    assert list(fragment_of(body, CALLBACK)) == [
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "state",
    ]
    # The token works on the proxy, with the user the backend vouched for.
    status, echo = await call_api(client, gw, token)
    assert status == 200, echo
    seen = identity(echo)
    assert seen["x-authenticated-userid"] == USERID
    assert seen["x-authenticated-scope"] == "read"
    assert seen["x-credential-identifier"] == "clientid"
    assert seen["x-consumer-username"] == "ClientApp"


async def test_implicit_without_scope_or_state_and_to_the_first_registered_uri(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, state=None)
    assert status == 200, body
    params = fragment_of(body, CALLBACK)
    assert set(params) == {"access_token", "token_type", "expires_in"}
    assert "refresh_token" not in params
    status, _ = await call_api(client, gw, params["access_token"])
    assert status == 200


async def test_implicit_for_a_public_client_needs_no_pkce(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, client_id="publicclient")
    assert status == 200, body
    params = fragment_of(body, MOBILE)
    status, echo = await call_api(client, gw, params["access_token"])
    assert status == 200
    assert identity(echo)["x-credential-identifier"] == "publicclient"


async def test_implicit_keeps_the_query_of_a_registered_uri(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, client_id="queryclient", redirect_uri=QUERY_URI)
    assert status == 200, body
    params = fragment_of(body, QUERY_URI)
    assert urlsplit(body["redirect_uri"]).query == "tenant=acme"
    assert params["state"] == STATE


async def test_implicit_token_cannot_be_used_as_a_refresh_token(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw)
    assert status == 200
    token = fragment_of(body, CALLBACK)["access_token"]
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": "clientid",
        "client_secret": SECRET,
    }
    async with client.post(f"{gw.url}/events/oauth2/token", data=refresh) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid refresh_token",
        }


async def test_implicit_without_expiry_has_no_expires_in(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, enable_implicit_grant=True, token_expiration=0)
    status, body = await authorize(client, gw, state=None)
    assert status == 200
    params = fragment_of(body, CALLBACK)
    assert set(params) == {"access_token", "token_type"}
    status, _ = await call_api(client, gw, params["access_token"])
    assert status == 200


async def test_implicit_errors_go_in_the_fragment(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, scope="admin")
    assert status == 400
    assert fragment_of(body, CALLBACK) == {
        "error": "invalid_scope",
        "error_description": "The requested scope is invalid or unknown",
        "state": STATE,
    }
    assert body["redirect_uri"] == (
        f"{CALLBACK}#error=invalid_scope"
        "&error_description=The+requested+scope+is+invalid+or+unknown&state=xyz"
    )


async def test_implicit_errors_before_the_redirect_uri_are_plain(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, redirect_uri="https://evil.example/cb")
    assert (status, body) == (
        400,
        {
            "error": "invalid_request",
            "error_description": "Invalid redirect_uri that does not match the application's",
        },
    )
    status, body = await authorize(client, gw, client_id="nobody")
    assert (status, body) == (
        400,
        {"error": "invalid_client", "error_description": "Invalid client authentication"},
    )


async def test_implicit_disabled_is_unsupported_response_type_in_the_fragment(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, enable_authorization_code=True)
    status, body = await authorize(client, gw)
    assert status == 400
    assert body == {
        "redirect_uri": f"{CALLBACK}#error=unsupported_response_type"
        "&error_description=Invalid+response_type&state=xyz"
    }
    # response_type=code on the same service still works (the query, not the fragment).
    status, body = await authorize(client, gw, response_type="code")
    assert status == 200
    assert body["redirect_uri"].startswith(f"{CALLBACK}?code=")


async def test_code_when_only_implicit_is_enabled_is_unsupported_in_the_query(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, body = await authorize(client, gw, response_type="code")
    assert (status, body) == (
        400,
        {
            "redirect_uri": f"{CALLBACK}?error=unsupported_response_type"
            "&error_description=Invalid+response_type&state=xyz"
        },
    )
    # The metadata advertises only what is enabled.
    async with client.get(f"{gw.url}/.well-known/oauth-authorization-server/events") as resp:
        meta = await resp.json()
    assert meta["response_types_supported"] == ["token"]
    assert "authorization_code" not in meta["grant_types_supported"]
