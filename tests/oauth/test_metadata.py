"""RFC 8414 authorization server metadata (design §4.4).

`GET /.well-known/oauth-authorization-server<route prefix>` describes one protected route:
its issuer, the four endpoints, and exactly the grants, scopes and methods it supports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import Backend, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

WELL_KNOWN = "/.well-known/oauth-authorization-server"
NO_ROUTE = {"message": "no Route matched with those values"}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with client.get(url) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"].startswith("application/json"), raw
        body = orjson.loads(raw)
        assert isinstance(body, dict)
        return resp.status, body


def expected(
    gw: RunningGateway,
    prefix: str,
    grants: list[str],
    response_types: list[str],
    scopes: list[str] | None = None,
) -> dict[str, Any]:
    issuer = f"https://127.0.0.1:{gw.port}{prefix}"
    document: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "grant_types_supported": grants,
        "response_types_supported": response_types,
        "scopes_supported": ["read", "write"] if scopes is None else scopes,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
    }
    if response_types:  # advertised only when code or implicit is enabled
        document["authorization_endpoint"] = f"{issuer}/oauth2/authorize"
    return document


async def test_metadata_of_the_walkthrough_service(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    status, body = await get(client, f"{gw.url}{WELL_KNOWN}/events")
    assert status == 200
    assert body == expected(gw, "/events", ["client_credentials", "password", "refresh_token"], [])
    # The advertised token endpoint is the real one.
    login = {
        "grant_type": "password",
        "client_id": "clientid",
        "client_secret": SECRET,
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    async with client.post(body["token_endpoint"], data=login) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["access_token"]
    async with client.post(
        body["introspection_endpoint"],
        data={"token": token, "client_id": "clientid", "client_secret": SECRET},
    ) as resp:
        assert (await resp.json())["active"] is True


async def test_public_clients_use_every_endpoint_with_their_client_id_alone(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """ "none" is advertised for each endpoint because a public client really authenticates
    there with its client_id alone (RFC 8414 §2: the lists say what the endpoint accepts)."""
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    _, body = await get(client, f"{gw.url}{WELL_KNOWN}/events")
    for endpoint in ("token", "revocation", "introspection"):
        assert "none" in body[f"{endpoint}_endpoint_auth_methods_supported"], endpoint
    public = {"client_id": "publicclient"}
    login = {
        **public,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    async with client.post(body["token_endpoint"], data=login) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["access_token"]
    async with client.post(body["introspection_endpoint"], data={**public, "token": token}) as resp:
        assert resp.status == 200
        introspected = await resp.json()
        assert (introspected["active"], introspected["client_id"]) == (True, "publicclient")
    async with client.post(body["revocation_endpoint"], data={**public, "token": token}) as resp:
        assert (resp.status, await resp.json()) == (200, {})
    async with client.post(body["introspection_endpoint"], data={**public, "token": token}) as resp:
        assert await resp.json() == {"active": False}


async def test_grant_types_follow_the_enabled_grants(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(
        [
            events_service(
                backend,
                enable_password_grant=False,
                enable_client_credentials=False,
                enable_authorization_code=True,
                enable_implicit_grant=True,
                scopes=["read", "write", "admin"],
            ),
            service(
                "reports",
                backend.url + "/api",
                ["/reports"],
                strip_path=False,
                oauth2={"provision_key": "pk-" + "r" * 40, "enable_client_credentials": True},
            ),
            service(
                "forever",
                backend.url + "/api",
                ["/forever"],
                strip_path=False,
                oauth2={"enable_password_grant": True, "token_expiration": 0},
            ),
        ],
        consumers=consumers(tmp_path),
    )
    status, body = await get(client, f"{gw.url}{WELL_KNOWN}/events")
    assert status == 200
    assert body == expected(
        gw,
        "/events",
        ["authorization_code", "implicit", "refresh_token"],
        ["code", "token"],
        ["read", "write", "admin"],
    )
    # client_credentials issues no refresh token, so refresh_token is not advertised.
    status, body = await get(client, f"{gw.url}{WELL_KNOWN}/reports")
    assert status == 200
    assert body == expected(gw, "/reports", ["client_credentials"], [], [])
    # Tokens that never expire come without refresh tokens (design §2).
    status, body = await get(client, f"{gw.url}{WELL_KNOWN}/forever")
    assert status == 200
    assert body == expected(gw, "/forever", ["password"], [], [])


async def test_every_protected_route_prefix_has_its_own_issuer(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    events = events_service(backend)
    events["routes"] = [
        {"name": "events-v1", "paths": ["/events", "/api/v1/events"], "strip_path": False}
    ]
    gw = await gateway([events], consumers=consumers(tmp_path))
    status, body = await get(client, f"{gw.url}{WELL_KNOWN}/api/v1/events")
    assert status == 200
    grants = ["client_credentials", "password", "refresh_token"]
    assert body == expected(gw, "/api/v1/events", grants, [])


async def test_public_routes_unknown_prefixes_and_sub_paths_are_404(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(
        [
            events_service(backend),
            service("public", backend.url + "/api", ["/public"], strip_path=False),
        ],
        consumers=consumers(tmp_path),
    )
    for path in ("/public", "/nope", "/events/1", "/eventsX", "", "/"):
        status, body = await get(client, f"{gw.url}{WELL_KNOWN}{path}")
        assert (status, body) == (404, NO_ROUTE), path


async def test_the_issuer_never_comes_from_the_host_header(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    async with client.get(f"{gw.url}{WELL_KNOWN}/events", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 200
        body = orjson.loads(await resp.read())
    assert body["issuer"] == f"https://127.0.0.1:{gw.port}/events"
    assert body["token_endpoint"] == f"https://127.0.0.1:{gw.port}/events/oauth2/token"


async def test_public_url_names_the_issuer_per_server_and_per_service(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    reports = service(
        "reports",
        backend.url + "/api",
        ["/reports"],
        strip_path=False,
        public_url="https://reports.example.com/auth/",
        oauth2={"provision_key": "pk-" + "r" * 40, "enable_client_credentials": True},
    )
    gw = await gateway(
        [events_service(backend), reports],
        consumers=consumers(tmp_path),
        public_url="https://gw.example.com",
    )
    for prefix, issuer in (
        ("/events", "https://gw.example.com/events"),
        ("/reports", "https://reports.example.com/auth/reports"),
    ):
        async with client.get(
            f"{gw.url}{WELL_KNOWN}{prefix}", headers={"Host": "evil.example"}
        ) as resp:
            body = orjson.loads(await resp.read())
        assert body["issuer"] == issuer
        assert body["introspection_endpoint"] == f"{issuer}/oauth2/introspect"
