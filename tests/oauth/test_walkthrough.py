"""The seed walkthrough exactly as operators run it on Kong/IAM today (issue 3)."""

from __future__ import annotations

import aiohttp

from tests.oauth.conftest import PROVISION_KEY, SECRET, OAuthWorld


def _headers(echo: dict[str, object]) -> dict[str, str]:
    pairs = echo["headers"]
    assert isinstance(pairs, list)
    return {str(name).lower(): str(value) for name, value in pairs}


async def test_password_grant_bearer_call_refresh_and_old_token_refused(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    login = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    async with client.post(world.token_url, json=login) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        tokens = await resp.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 7200

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with client.get(f"{world.api_url}/echo", headers=bearer) as resp:
        assert resp.status == 200
        seen = _headers(await resp.json())
    assert seen["x-consumer-username"] == "ClientApp"
    assert seen["x-consumer-custom-id"] == "client-app-1"
    assert seen["x-authenticated-userid"] == "1"
    assert seen["x-credential-identifier"] == "clientid"
    assert "x-consumer-id" in seen
    assert "authorization" not in seen  # hide_credentials defaults to true

    refresh = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
    }
    async with client.post(world.token_url, json=refresh) as resp:
        assert resp.status == 200
        renewed = await resp.json()
    assert renewed["access_token"] != tokens["access_token"]
    assert renewed["refresh_token"] != tokens["refresh_token"]

    async with client.get(world.api_url, headers=bearer) as resp:
        assert resp.status == 401
        assert await resp.json() == {
            "error": "invalid_token",
            "error_description": "The access token is invalid or has expired",
        }
        assert resp.headers["WWW-Authenticate"] == (
            'Bearer realm="edgeauth", error="invalid_token", '
            'error_description="The access token is invalid or has expired"'
        )
    new_bearer = {"Authorization": f"Bearer {renewed['access_token']}"}
    async with client.get(world.api_url, headers=new_bearer) as resp:
        assert resp.status == 200
