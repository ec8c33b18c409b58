"""A standard OAuth 2.0 client library against edgeauth: Authlib's httpx client.

Authlib plays the client app at the token, revoke endpoints and on the API; the test plays
the resource owner's backend at the authorize endpoint (Kong's provision-key flow, which no
library knows). Both client authentication methods Authlib offers for a secret are used:
`client_secret_basic` (its default; it form-encodes the credentials, RFC 6749 §2.3.1) and
`client_secret_post`; the public client uses `none`.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import httpx
import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

# Authlib warns at import that plain httpx (rather than httpx2) is deprecated, through a filter
# of its own that says "always"; record=True keeps that warning out of the test run.
with warnings.catch_warnings(record=True):
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

USERID = "user-4711"
CALLBACK = "https://app.example/callback"
MOBILE = "https://mobile.example/cb"
VERIFIER = "Authlib-verifier." + "q" * 40 + "~_"

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    return await gateway(
        [events_service(backend, enable_authorization_code=True)], consumers=consumers(tmp_path)
    )


@pytest.fixture
def oauth_client(client_ssl: ssl.SSLContext) -> ClientFactory:
    """`async with oauth_client(client_id=..., ...) as c`: Authlib trusting the test CA."""

    @asynccontextmanager
    async def make(**kwargs: Any) -> AsyncIterator[Any]:
        # verify=<path str> is deprecated in httpx 0.28: an SSLContext on the test CA instead.
        session = AsyncOAuth2Client(verify=client_ssl, timeout=10.0, **kwargs)
        try:
            yield session
        finally:
            await session.aclose()

    return make


async def identity_of(session: Any, gw: RunningGateway) -> dict[str, str]:
    """Call the API through the proxy with Authlib's bearer auth; the backend's identity view."""
    resp: httpx.Response = await session.get(f"{gw.url}/events/echo")
    assert resp.status_code == 200, resp.text
    sent = resp.request.headers["Authorization"]
    assert sent == f"Bearer {session.token['access_token']}"
    return {
        str(k).lower(): str(v) for k, v in resp.json()["headers"] if str(k).lower().startswith("x-")
    }


async def api_status(client: aiohttp.ClientSession, gw: RunningGateway, token: str) -> int:
    async with client.get(
        f"{gw.url}/events/echo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status


def assert_token(token: dict[str, Any], *, refresh: bool, scope: str | None) -> None:
    members = {"access_token", "token_type", "expires_in", "expires_at"}
    members |= {"refresh_token"} if refresh else set()
    members |= {"scope"} if scope else set()
    assert set(token) == members, token
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 7200
    if scope:
        assert token["scope"] == scope


async def test_password_grant_with_client_secret_post(
    gw: RunningGateway, oauth_client: ClientFactory
) -> None:
    async with oauth_client(
        client_id="clientid",
        client_secret=SECRET,
        token_endpoint_auth_method="client_secret_post",
    ) as session:
        # Authlib does not insist on username/password once grant_type is explicit; Kong's
        # provision_key and authenticated_userid travel as extra body parameters.
        token = await session.fetch_token(
            f"{gw.url}/events/oauth2/token",
            grant_type="password",
            provision_key=PROVISION_KEY,
            authenticated_userid=USERID,
            scope="read write",
        )
        assert_token(token, refresh=True, scope="read write")
        seen = await identity_of(session, gw)
    assert seen["x-authenticated-userid"] == USERID
    assert seen["x-authenticated-scope"] == "read write"
    assert seen["x-credential-identifier"] == "clientid"
    assert seen["x-consumer-username"] == "ClientApp"


async def test_password_grant_with_username_and_password_as_well(
    gw: RunningGateway, oauth_client: ClientFactory
) -> None:
    # Authlib's usual call shape; edgeauth ignores the unknown username/password.
    async with oauth_client(client_id="clientid", client_secret=SECRET) as session:
        token = await session.fetch_token(
            f"{gw.url}/events/oauth2/token",
            username="alice",
            password="never-seen-by-the-gateway",
            provision_key=PROVISION_KEY,
            authenticated_userid=USERID,
        )
        assert_token(token, refresh=True, scope=None)
        assert session.metadata["grant_type"] == "password"
        assert (await identity_of(session, gw))["x-authenticated-userid"] == USERID


async def test_client_credentials_with_client_secret_basic(
    gw: RunningGateway, oauth_client: ClientFactory
) -> None:
    # client_secret_basic is Authlib's default; SECRET contains ':' and '%', so this also
    # checks that Authlib's form-encoded Basic credentials are decoded (RFC 6749 §2.3.1).
    async with oauth_client(client_id="clientid", client_secret=SECRET, scope="read") as session:
        assert session.token_endpoint_auth_method == "client_secret_basic"
        token = await session.fetch_token(
            f"{gw.url}/events/oauth2/token", grant_type="client_credentials"
        )
        assert_token(token, refresh=False, scope="read")
        seen = await identity_of(session, gw)
    assert seen["x-credential-identifier"] == "clientid"
    assert seen["x-authenticated-scope"] == "read"
    assert "x-authenticated-userid" not in seen


async def test_refresh_token_rotates_and_the_old_access_token_dies(
    gw: RunningGateway, oauth_client: ClientFactory, client: aiohttp.ClientSession
) -> None:
    url = f"{gw.url}/events/oauth2/token"
    async with oauth_client(client_id="clientid", client_secret=SECRET) as session:
        first = dict(
            await session.fetch_token(
                url,
                grant_type="password",
                provision_key=PROVISION_KEY,
                authenticated_userid=USERID,
                scope="read write",
            )
        )
        second = await session.refresh_token(
            url, refresh_token=first["refresh_token"], scope="read"
        )
        assert_token(second, refresh=True, scope="read")
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        seen = await identity_of(session, gw)
        assert session.token["access_token"] == second["access_token"]
    assert seen["x-authenticated-scope"] == "read"
    assert seen["x-authenticated-userid"] == USERID
    assert await api_status(client, gw, first["access_token"]) == 401


async def backend_authorizes(
    client: aiohttp.ClientSession, gw: RunningGateway, authorization_url: str
) -> str:
    """The resource owner's backend: forwards Authlib's authorization request parameters with
    the provision key and the user it authenticated; returns Kong's redirect_uri."""
    parts = urlsplit(authorization_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{gw.url}/events/oauth2/authorize"
    params = dict(parse_qsl(parts.query))
    params |= {"provision_key": PROVISION_KEY, "authenticated_userid": USERID}
    async with client.post(f"{gw.url}/events/oauth2/authorize", data=params) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert set(body) == {"redirect_uri"}
    uri = body["redirect_uri"]
    assert isinstance(uri, str)
    return uri


async def test_authorization_code_with_pkce_for_a_public_client(
    gw: RunningGateway, oauth_client: ClientFactory, client: aiohttp.ClientSession
) -> None:
    async with oauth_client(
        client_id="publicclient",
        token_endpoint_auth_method="none",
        redirect_uri=MOBILE,
        scope="read",
        code_challenge_method="S256",
    ) as session:
        url, state = session.create_authorization_url(
            f"{gw.url}/events/oauth2/authorize", code_verifier=VERIFIER
        )
        sent = dict(parse_qsl(urlsplit(url).query))
        assert sent["code_challenge_method"] == "S256"
        assert sent["response_type"] == "code"
        redirect = await backend_authorizes(client, gw, url)
        assert redirect.startswith(MOBILE + "?")
        answer = dict(parse_qsl(urlsplit(redirect).query))
        assert answer["state"] == state
        token = await session.fetch_token(
            f"{gw.url}/events/oauth2/token",
            code=answer["code"],
            code_verifier=VERIFIER,
            redirect_uri=MOBILE,
        )
        assert_token(token, refresh=True, scope="read")
        seen = await identity_of(session, gw)
        assert seen["x-credential-identifier"] == "publicclient"
        assert seen["x-authenticated-userid"] == USERID
        # A second redemption of the same code fails, and takes the tokens with it.
        with pytest.raises(OAuthError, match="invalid_grant"):
            await session.fetch_token(
                f"{gw.url}/events/oauth2/token",
                code=answer["code"],
                code_verifier=VERIFIER,
                redirect_uri=MOBILE,
            )
    assert await api_status(client, gw, token["access_token"]) == 401


async def test_authorization_code_with_pkce_for_a_confidential_client_and_revocation(
    gw: RunningGateway, oauth_client: ClientFactory, client: aiohttp.ClientSession
) -> None:
    async with oauth_client(
        client_id="clientid",
        client_secret=SECRET,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_post",
        redirect_uri=CALLBACK,
        scope="read write",
        code_challenge_method="S256",
    ) as session:
        url, state = session.create_authorization_url(
            f"{gw.url}/events/oauth2/authorize", code_verifier=VERIFIER
        )
        redirect = await backend_authorizes(client, gw, url)
        # Authlib reads the code from the redirect itself and checks the state.
        token = await session.fetch_token(
            f"{gw.url}/events/oauth2/token",
            authorization_response=redirect,
            code_verifier=VERIFIER,
            state=state,
        )
        assert_token(token, refresh=True, scope="read write")
        seen = await identity_of(session, gw)
        assert seen["x-credential-identifier"] == "clientid"
        # RFC 7009 through Authlib: revoking the refresh token kills the access token too.
        resp: httpx.Response = await session.revoke_token(
            f"{gw.url}/events/oauth2/revoke",
            token=token["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert (resp.status_code, resp.json()) == (200, {})
        assert resp.headers["Cache-Control"] == "no-store"
    assert await api_status(client, gw, token["access_token"]) == 401
