"""What crosses the gateway: paths, queries, bodies and headers, both ways (design §3, §5)."""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

import aiohttp
import pytest

from tests.conftest import (
    Backend,
    GatewayFactory,
    body_of,
    raw_exchange,
    service,
    status_of,
)


def _headers(echo: dict[str, Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


async def test_get_reaches_backend_with_path_and_query_unchanged(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], strip_path=True)])
    async with client.get(f"{gw.url}/tools/echo/a%20b/c?x=1&y=a%26b&access_token=kept") as resp:
        assert resp.status == 200
        echo = await resp.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/echo/a%20b/c"
    assert echo["query"] == "x=1&y=a%26b&access_token=kept"


async def test_strip_path_false_keeps_the_prefix_under_the_service_path(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("api", backend.url + "/api", ["/echo"], strip_path=False)])
    async with client.get(f"{gw.url}/echo/x") as resp:
        echo = await resp.json()
    assert echo["path"] == "/api/echo/x"


async def test_post_body_streams_through_with_its_digest(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    payload = bytes(range(256)) * 4096
    async with client.post(f"{gw.url}/echo", data=payload) as resp:
        echo = await resp.json()
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


async def test_hop_by_hop_identity_and_spoofable_headers_are_removed(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    sent = {
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-T",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic eA==",
        "Proxy-Foo": "bar",
        "X-Consumer-ID": "spoofed",
        "X-Consumer-Username": "admin",
        "X_Consumer_Custom_ID": "spoofed",
        "X-Credential-Identifier": "spoofed",
        "X-Authenticated-Userid": "root",
        "X-Authenticated-Scope": "admin",
        "X-Anonymous-Consumer": "false",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "X-Request-ID": "client-chosen",
        "X-Custom": "kept",
    }
    async with client.get(f"{gw.url}/echo", headers=sent) as resp:
        assert resp.status == 200
        echo = await resp.json()
    seen = _headers(echo)
    for name in (
        "x-secret-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-foo",
        "x-consumer-id",
        "x-consumer-username",
        "x_consumer_custom_id",
        "x-credential-identifier",
        "x-authenticated-userid",
        "x-authenticated-scope",
        "x-anonymous-consumer",
    ):
        assert name not in seen, name
    assert seen["x-custom"] == ["kept"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-real-ip"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]
    assert seen["x-forwarded-port"] == [str(gw.port)]
    assert seen["via"] == ["1.1 edgeauth"]
    assert seen["x-request-id"] != ["client-chosen"]
    assert seen["x-request-id"] == [resp.headers["X-Request-ID"]]
    assert seen["host"] == [f"127.0.0.1:{backend.port}"]


async def test_trusted_proxy_forwarded_headers_are_extended(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        [service("tools", backend.url, ["/tools"], strip_path=True)],
        trusted_proxies=["127.0.0.0/8"],
    )
    sent = {
        "X-Forwarded-For": "203.0.113.9, 10.1.2.3",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-Port": "443",
        "X-Request-ID": "lb-42",
        "Via": "1.1 lb",
    }
    async with client.get(f"{gw.url}/tools/echo", headers=sent) as resp:
        echo = await resp.json()
    seen = _headers(echo)
    assert seen["x-forwarded-for"] == ["203.0.113.9, 10.1.2.3, 127.0.0.1"]
    assert seen["x-forwarded-host"] == ["api.example.com"]
    assert seen["x-forwarded-port"] == ["443"]
    assert seen["x-forwarded-prefix"] == ["/tools"]
    # 10.1.2.3 is not trusted, so it is the closest address we can vouch for
    assert seen["x-real-ip"] == ["10.1.2.3"]
    assert seen["x-request-id"] == ["lb-42"]
    assert seen["via"] == ["1.1 lb, 1.1 edgeauth"]


async def test_response_headers_pass_minus_hop_by_hop_plus_via_and_request_id(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/"])])
    async with client.get(f"{gw.url}/status/201") as resp:
        assert resp.status == 201
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Via"] == "1.1 edgeauth"
        assert resp.headers["Server"].startswith("Python")  # the backend's own Server passes
        assert len(resp.headers["X-Request-ID"]) == 32
        assert "Keep-Alive" not in resp.headers


async def test_no_route_gives_kongs_404_body(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"])])
    async with client.get(f"{gw.url}/toolsX/echo") as resp:
        assert resp.status == 404
        assert await resp.json() == {"message": "no Route matched with those values"}
        assert resp.headers["Content-Type"] == "application/json"


async def test_routing_precedence_longest_prefix_then_host_then_method(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    base = backend.url
    gw = await gateway(
        [
            service("root", base + "/echo/root", ["/"]),
            service("a", base + "/echo/a", ["/a"]),
            service("ab", base + "/echo/ab", ["/a/b"]),
            service("host", base + "/echo/host", ["/a"], hosts=["api.example"]),
            service("post", base + "/echo/post", ["/a"], hosts=["api.example"], methods=["POST"]),
        ]
    )

    async def landed(path: str, method: str = "GET", host: str | None = None) -> str:
        headers = {"Host": host} if host else {}
        async with client.request(method, f"{gw.url}{path}", headers=headers) as resp:
            return str((await resp.json())["path"]).split("/")[2]

    assert await landed("/a/b/c") == "ab"
    assert await landed("/a/bc") == "a"
    assert await landed("/a") == "a"
    assert await landed("/ax") == "root"
    assert await landed("/a/x", host="api.example") == "host"
    assert await landed("/a/x", host="API.example:8443") == "host"
    assert await landed("/a/x", "POST", host="api.example") == "post"
    assert await landed("/a/b", "POST", host="api.example") == "ab"


@pytest.mark.parametrize(
    "path",
    [
        "/tools/%2F/echo",
        "/tools/a%2fb",
        "/tools/%5C",
        "/tools/%00",
        "/tools/a\\b",
        "/tools/../tools/echo",
        "/tools/%2e%2e/tools/echo",
        "/other/../tools/echo",
        "/..",
        "/tools/a/../../x",
    ],
)
async def test_smuggling_and_escaping_paths_are_refused_with_400(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, path: str
) -> None:
    gw = await gateway(
        [
            service("tools", backend.url, ["/tools"], strip_path=True),
            service("o", backend.url, ["/other"]),
        ]
    )
    raw = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    response = await raw_exchange(gw.port, client_ssl, raw)
    assert status_of(response) == 400, response
    assert body_of(response) == {"message": "Bad request"}
    assert backend.stats["slow_started"] == 0


@pytest.mark.parametrize(
    ("path", "forwarded"),
    [
        ("/tools/a/../echo", "/echo"),
        ("/tools/./echo", "/echo"),
        ("/tools/%65cho", "/echo"),
        ("/tools/echo//x", "/echo/x"),
        ("//tools///echo", "/echo"),
    ],
)
async def test_dot_segments_inside_the_route_are_normalized_once(
    backend: Backend,
    gateway: GatewayFactory,
    client_ssl: ssl.SSLContext,
    path: str,
    forwarded: str,
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], strip_path=True)])
    raw = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    response = await raw_exchange(gw.port, client_ssl, raw)
    assert status_of(response) == 200, response
    assert body_of(response)["path"] == forwarded


async def test_access_log_has_one_json_line_per_request_without_query(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([service("tools", backend.url, ["/tools"], strip_path=True)])
    async with client.get(f"{gw.url}/tools/echo?access_token=SECRET123") as resp:
        assert resp.status == 200
        rid = resp.headers["X-Request-ID"]
    entries = gw.access_log()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["request_id"] == rid
    assert entry["path"] == "/tools/echo"
    assert entry["status"] == 200
    assert entry["service"] == "tools"
    assert entry["route"] == "tools-route"
    assert entry["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert set(entry["latency_ms"]) == {"total", "edge", "upstream"}
    assert "SECRET123" not in (gw.directory / "access.log").read_text()
