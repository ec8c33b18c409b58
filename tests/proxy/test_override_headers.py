"""URL and method override headers never reach the backend unless the operator says so
(issue 12, "Also found"): frameworks that honour `X-Original-URL` or `X-HTTP-Method-Override`
would otherwise route a request somewhere the gateway did not authorize."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import Backend, GatewayFactory, service

OVERRIDES = {
    "X-Original-URL": "/api/events",
    "X-Rewrite-URL": "/api/events",
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
}


async def _seen(client: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> set[str]:
    async with client.get(url, headers=headers) as resp:
        assert resp.status == 200
        echo: dict[str, Any] = await resp.json()
    return {name.lower() for name, _ in echo["headers"]}


async def test_override_headers_are_dropped_by_default(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"])])
    seen = await _seen(client, f"{gw.url}/tools/echo", {**OVERRIDES, "X-Kept": "1"})
    assert not seen & {name.lower() for name in OVERRIDES}
    assert "x-kept" in seen


async def test_the_dropped_headers_are_configurable(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"])], drop_request_headers=["X-Internal"]
    )
    seen = await _seen(client, f"{gw.url}/tools/echo", {**OVERRIDES, "x-INTERNAL": "1"})
    assert "x-internal" not in seen
    assert {name.lower() for name in OVERRIDES} <= seen
