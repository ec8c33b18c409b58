"""Hostile bytes at the token endpoint get their documented error, never a 500."""

from __future__ import annotations

import aiohttp

from tests.oauth.conftest import OAuthWorld


async def test_non_ascii_basic_header_is_invalid_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    headers = {
        "Authorization": "Basic \u00e9t\u00e9",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with client.post(
        world.token_url, data=b"grant_type=client_credentials", headers=headers
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_client"
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="edgeauth"'


async def test_lone_surrogates_in_secrets_are_refused_not_crashed_on(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    """Malformed text is `invalid_request` wherever it is (tests/oauth/test_issue_inputs.py)."""
    secret = b'{"client_id":"clientid","client_secret":"\\ud800","grant_type":"client_credentials"}'
    headers = {"Content-Type": "application/json"}
    async with client.post(world.token_url, data=secret, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
    key = b'{"client_id":"publicclient","grant_type":"password","provision_key":"\\ud800"}'
    async with client.post(world.token_url, data=key, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
