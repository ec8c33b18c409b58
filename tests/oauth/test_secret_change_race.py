"""A token asked for with a client's old secret never outlives the change of that secret
(issue 13, point 2).

Four clients keep asking for `client_credentials` tokens with the current secret while the
admin API sets a new one. Whatever the interleaving, once the PATCH has answered and the
requests in flight have been answered too, no token obtained with the old secret is accepted:
it was issued before the change (and revoked by it) or refused (never stored).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import SECRET, events_service

ROUNDS = 4
ASKERS = 4
BEFORE_CHANGE = 25  # tokens each round issues with the old secret before it changes


async def _ask_until(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    secret: str,
    stop: asyncio.Event,
    tokens: list[str],
) -> None:
    """Adds the tokens issued for `secret` to `tokens` until `stop` (refusals are expected
    once it changed)."""
    form = {"grant_type": "client_credentials", "client_id": "clientid", "client_secret": secret}
    while not stop.is_set():
        async with client.post(f"{gw.url}/events/oauth2/token", data=form) as resp:
            body = await resp.json()
            if resp.status == 200:
                tokens.append(str(body["access_token"]))
            else:
                assert (resp.status, body["error"]) == (400, "invalid_client"), body


async def test_no_token_asked_for_with_an_old_secret_survives_its_change(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway([events_service(backend, max_failed_client_auth=0)])
    for path, body in (  # the admin API's own: what config.toml declares it may not change
        ("/consumers", {"username": "ClientApp"}),
        (
            "/consumers/ClientApp/oauth2",
            {"name": "SampleApp", "client_id": "clientid", "client_secret": SECRET},
        ),
    ):
        async with client.post(gw.admin_url + path, json=body, headers=gw.admin_headers) as r:
            assert r.status == 201, await r.text()
    secret = SECRET
    for round_ in range(ROUNDS):
        stop = asyncio.Event()
        tokens: list[str] = []
        askers = [
            asyncio.create_task(_ask_until(client, gw, secret, stop, tokens)) for _ in range(ASKERS)
        ]
        async with asyncio.timeout(30):  # however loaded the machine, the race is really run
            while len(tokens) < BEFORE_CHANGE:  # noqa: ASYNC110 - the askers fill the list
                await asyncio.sleep(0.02)
        secret = f"new-secret-{round_}"
        async with client.patch(
            f"{gw.admin_url}/oauth2/clientid",
            json={"client_secret": secret},
            headers=gw.admin_headers,
        ) as resp:
            assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.2)  # old-secret requests keep coming a while
        stop.set()
        await asyncio.gather(*askers)
        for token in tokens:
            async with client.get(
                f"{gw.url}/events/echo", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 401, f"round {round_}: an old-secret token is accepted"
