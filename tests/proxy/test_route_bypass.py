"""Nested routes cannot be bypassed by how a path is spelled (issue 12, point 5).

A public `/api` and a protected `/api/events` on one backend: fragments, `;` parameters, `//`
and case must never carry a request for the protected prefix onto the public route, because
backends drop fragments, strip parameters, merge slashes or ignore case.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from tests.conftest import (
    Backend,
    GatewayFactory,
    RunningGateway,
    body_of,
    raw_exchange,
    service,
    status_of,
)
from tests.oauth.conftest import PROVISION_KEY

BAD_REQUEST = {"message": "Bad request"}


def _nested(backend: Backend, **protected_route: Any) -> list[dict[str, Any]]:
    """Public /api and protected /api/events, both mapping the backend's /api/... as is."""
    events = {"name": "events-route", "paths": ["/api/events"], "strip_path": False}
    return [
        service("public", backend.url, ["/api"], strip_path=False),
        {
            "name": "events",
            "url": backend.url,
            "routes": [{**events, **protected_route}],
            "oauth2": {"provision_key": PROVISION_KEY, "enable_client_credentials": True},
        },
    ]


async def _get(gw: RunningGateway, client_ssl: ssl.SSLContext, target: str) -> bytes:
    raw = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    return await raw_exchange(gw.port, client_ssl, raw)


async def test_the_public_route_serves_what_it_should(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(_nested(backend))
    response = await _get(gw, client_ssl, "/api/echo/x?y=1")
    assert status_of(response) == 200, response
    assert body_of(response)["path"] == "/api/echo/x"
    response = await _get(gw, client_ssl, "/api/events")
    assert status_of(response) == 401, response


@pytest.mark.parametrize(
    "target",
    ["/api/events#", "/api/events#/x", "/api#/events", "/api/echo?x=1#frag", "/api/echo?#"],
)
async def test_a_fragment_anywhere_in_the_target_is_refused(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, target: str
) -> None:
    gw = await gateway(_nested(backend))
    response = await _get(gw, client_ssl, target)
    assert status_of(response) == 400, response
    assert body_of(response) == BAD_REQUEST


@pytest.mark.parametrize(
    "target",
    [
        "/api/events;jsessionid=1",
        "/api/events;jsessionid=1/1",
        "/api/events%3B/1",
        "/api/events%3bx",
        "/api;x/events",
    ],
)
async def test_path_parameters_never_reach_the_less_protected_route(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, target: str
) -> None:
    gw = await gateway(_nested(backend))
    response = await _get(gw, client_ssl, target)
    assert status_of(response) == 400, response
    assert body_of(response) == BAD_REQUEST


async def test_a_route_that_allows_path_parameters_forwards_them(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    services = _nested(backend)
    services[0]["routes"][0]["allow_path_params"] = True
    gw = await gateway(services)
    response = await _get(gw, client_ssl, "/api/x;v=1/echo")
    assert status_of(response) == 200, response
    assert body_of(response)["path"] == "/api/x;v=1/echo"
    # Still matched as /api/events/1, whose route does not allow them: refused, not public.
    response = await _get(gw, client_ssl, "/api/events;v=1/1")
    assert status_of(response) == 400, response


@pytest.mark.parametrize("target", ["/api//events", "//api/events/1", "/api///events/"])
async def test_merged_slashes_reach_the_protected_route(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, target: str
) -> None:
    gw = await gateway(_nested(backend))
    response = await _get(gw, client_ssl, target)
    assert status_of(response) == 401, response


@pytest.mark.parametrize("target", ["/api/EVENTS", "/API/Events/1", "/api/events"])
async def test_a_case_insensitive_route_takes_every_spelling(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, target: str
) -> None:
    gw = await gateway(_nested(backend, case_insensitive=True))
    response = await _get(gw, client_ssl, target)
    assert status_of(response) == 401, response


async def test_a_case_sensitive_route_keeps_its_spelling(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(_nested(backend))
    response = await _get(gw, client_ssl, "/api/EVENTS/echo")
    assert status_of(response) == 200, response
    assert body_of(response)["path"] == "/api/EVENTS/echo"  # the public route, as written


async def test_a_case_insensitive_route_forwards_the_clients_spelling(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext
) -> None:
    gw = await gateway(
        [
            {
                "name": "tools",
                "url": backend.url + "/tools",
                "routes": [{"name": "t", "paths": ["/Tools"], "case_insensitive": True}],
            }
        ]
    )
    response = await _get(gw, client_ssl, "/TOOLS/Dir//echo")
    assert status_of(response) == 200, response
    assert body_of(response)["path"] == "/tools/Dir/echo"
