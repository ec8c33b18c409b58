"""`anonymous` never opens a route that requires scopes (issue 13, point 1).

An anonymous consumer holds no scope: on a route with `required_scopes`, a missing, unknown
or foreign token is refused as if `anonymous` were unset, while the service's other routes
still fall back to it. `check-config` says so when both are configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from edgeauth import tls
from tests.conftest import Backend, GatewayFactory, edgeauth_command, write_config
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

REPORTS_KEY = "pk-" + "r" * 40
INVALID = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
MISSING = {"error": "invalid_request", "error_description": "The access token is missing"}


def _services(backend: Backend) -> list[dict[str, Any]]:
    events = events_service(backend, anonymous="Guest")
    events["routes"] = [
        {"name": "events-route", "paths": ["/events"], "strip_path": False},
        {
            "name": "events-admin",
            "paths": ["/events/admin"],
            "strip_path": False,
            "required_scopes": ["write"],
        },
    ]
    reports = events_service(backend, provision_key=REPORTS_KEY)
    reports.update(name="reports", routes=[{"name": "reports-route", "paths": ["/reports"]}])
    return [events, reports]


def _consumers(tmp_path: Path) -> list[dict[str, Any]]:
    return [*consumers(tmp_path), {"username": "Guest"}]


async def _token(client: aiohttp.ClientSession, url: str, key: str, scope: str) -> str:
    login = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": key,
        "authenticated_userid": "user-1",
        "scope": scope,
    }
    async with client.post(f"{url}/oauth2/token", json=login) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def _get(
    client: aiohttp.ClientSession, url: str, token: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_a_route_requiring_scopes_never_falls_back_to_anonymous(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(_services(backend), consumers=_consumers(tmp_path))
    read = await _token(client, f"{gw.url}/events", PROVISION_KEY, "read")
    write = await _token(client, f"{gw.url}/events", PROVISION_KEY, "write")
    foreign = await _token(client, f"{gw.url}/reports", REPORTS_KEY, "write")
    admin = f"{gw.url}/events/admin/echo"

    assert await _get(client, admin, None) == (401, MISSING)
    assert await _get(client, admin, "garbage-" + "g" * 40) == (401, INVALID)
    assert await _get(client, admin, foreign) == (401, INVALID)
    status, body = await _get(client, admin, read)
    assert (status, body["error"]) == (403, "insufficient_scope")
    status, echo = await _get(client, admin, write)
    assert status == 200
    assert ["X-Consumer-Username", "ClientApp"] in echo["headers"]

    # The service's route without required_scopes still serves the anonymous consumer.
    for token in (None, "garbage-" + "g" * 40, foreign):
        status, echo = await _get(client, f"{gw.url}/events/echo", token)
        assert status == 200
        assert ["X-Anonymous-Consumer", "true"] in echo["headers"]
        assert ["X-Consumer-Username", "Guest"] in echo["headers"]


def test_check_config_notes_that_required_scopes_turn_anonymous_off(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    nowhere = Backend("http://127.0.0.1:9", 9, web.Application())  # check-config connects to none
    config = write_config(tmp_path, dev_cert, _services(nowhere), consumers=_consumers(tmp_path))
    result = edgeauth_command("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    (note,) = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert 'services[0].routes[1]: route "events-admin" requires scopes' in note
    assert 'anonymous consumer "Guest"' in note
