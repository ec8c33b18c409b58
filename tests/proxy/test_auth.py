"""Bearer tokens on the proxy path, over real HTTPS (design §4.5, §5 steps 2-4, §8, §9).

Tokens come from the gateway's own token endpoint (password grant); the sample backend's
/echo reports exactly what was forwarded to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from tests.conftest import (
    Backend,
    Clock,
    GatewayFactory,
    RunningGateway,
    body_of,
    raw_exchange,
    service,
    status_of,
)
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

REPORTS_KEY = "pk-" + "r" * 40
MISSING = {"error": "invalid_request", "error_description": "The access token is missing"}
INVALID = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
INVALID_CHALLENGE = (
    'Bearer realm="edgeauth", error="invalid_token", '
    'error_description="The access token is invalid or has expired"'
)
BARE_CHALLENGE = 'Bearer realm="edgeauth"'
UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "The service is temporarily unavailable, retry shortly",
}
IDENTITY_PREFIXES = ("x-consumer-", "x-credential-", "x-authenticated-", "x-anonymous-")


# --- helpers ---------------------------------------------------------------------------------


async def _start(
    gateway: GatewayFactory,
    backend: Backend,
    tmp_path: Path,
    *,
    extra_consumers: list[dict[str, Any]] | None = None,
    **oauth2: Any,
) -> RunningGateway:
    """The walkthrough's events service (overrides in `oauth2`) and its consumers."""
    return await gateway(
        [events_service(backend, **oauth2)],
        consumers=consumers(tmp_path) + (extra_consumers or []),
    )


def _reports_service(backend: Backend, **oauth2: Any) -> dict[str, Any]:
    """A second protected service with its own provision key, on /reports."""
    policy: dict[str, Any] = {
        "scopes": ["read", "write"],
        "provision_key": REPORTS_KEY,
        "enable_password_grant": True,
        **oauth2,
    }
    return service("reports", backend.url + "/api", ["/reports"], strip_path=False, oauth2=policy)


async def _issue(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    *,
    prefix: str = "/events",
    provision_key: str = PROVISION_KEY,
    scope: str | None = None,
) -> dict[str, Any]:
    """The token endpoint's success body for a password grant of ClientApp's SampleApp."""
    login = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": provision_key,
        "authenticated_userid": "user-1",
    }
    if scope is not None:
        login["scope"] = scope
    async with client.post(f"{gw.url}{prefix}/oauth2/token", json=login) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    doc = orjson.loads(text)
    assert isinstance(doc, dict)
    return doc


async def _token(client: aiohttp.ClientSession, gw: RunningGateway, **kwargs: Any) -> str:
    return str((await _issue(client, gw, **kwargs))["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _seen(echo: dict[str, Any]) -> dict[str, list[str]]:
    """Headers the backend received: lower-cased name -> every value."""
    seen: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        seen.setdefault(str(name).lower(), []).append(str(value))
    return seen


def _identity(seen: dict[str, list[str]]) -> dict[str, list[str]]:
    """The identity headers among them, whatever their spelling (`-` or `_`)."""
    return {
        name: values
        for name, values in seen.items()
        if name.replace("_", "-").startswith(IDENTITY_PREFIXES)
    }


async def _echo(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with client.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        doc = await resp.json()
    assert isinstance(doc, dict)
    return doc


async def _expect_refusal(
    client: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | CIMultiDict[str] | None,
    status: int,
    body: dict[str, str],
    challenge: str | None,
) -> None:
    """One refused request: status, exact JSON body, exact challenge (or none)."""
    async with client.get(url, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        assert await resp.json() == body
        assert resp.headers.get("WWW-Authenticate") == challenge
        assert resp.headers["X-Request-ID"]


async def _consumer_id(gw: RunningGateway, username: str) -> str:
    store = gw.gateway.c.store
    assert store is not None
    consumer = await store.get_consumer(username)
    assert consumer is not None
    return consumer.id


# --- finding the token (design §5 step 2) ----------------------------------------------------


async def test_no_token_is_401_missing_with_a_bare_challenge(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    await _expect_refusal(client, f"{gw.url}/events/echo", None, 401, MISSING, BARE_CHALLENGE)


async def test_basic_authorization_counts_as_a_missing_token(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    for value in ("Basic Y2xpZW50aWQ6c2VjcmV0", "Bearer", "Bearer   ", "Digest x"):
        await _expect_refusal(
            client,
            f"{gw.url}/events/echo",
            {"Authorization": value},
            401,
            MISSING,
            BARE_CHALLENGE,
        )


async def test_unknown_token_is_401_invalid_token_with_the_full_challenge(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    # Twice: the second answer comes from the negative cache and must be identical.
    for _ in range(2):
        await _expect_refusal(
            client,
            f"{gw.url}/events/echo",
            _bearer("not-a-token-" + "x" * 32),
            401,
            INVALID,
            INVALID_CHALLENGE,
        )


async def test_bearer_and_token_schemes_are_accepted_in_any_case(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    for scheme in ("Bearer", "bearer", "BEARER", "token", "Token"):
        echo = await _echo(client, f"{gw.url}/events/echo", {"Authorization": f"{scheme} {token}"})
        seen = _seen(echo)
        assert seen["x-consumer-username"] == ["ClientApp"], scheme
        assert "authorization" not in seen, scheme


async def test_two_authorization_headers_are_400_invalid_request(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    for second in (f"Bearer {token}", "Basic eDp5"):
        headers = CIMultiDict([("Authorization", f"Bearer {token}"), ("Authorization", second)])
        await _expect_refusal(
            client,
            f"{gw.url}/events/echo",
            headers,
            400,
            {
                "error": "invalid_request",
                "error_description": "More than one authorization header was sent",
            },
            None,
        )


async def test_auth_header_name_reads_that_header_and_realm_names_the_challenge(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(
        gateway, backend, tmp_path, auth_header_name="x-api-token", realm="events-api"
    )
    token = await _token(client, gw)
    # The Authorization header is not where tokens are looked for any more.
    await _expect_refusal(
        client, f"{gw.url}/events/echo", _bearer(token), 401, MISSING, 'Bearer realm="events-api"'
    )
    await _expect_refusal(
        client,
        f"{gw.url}/events/echo",
        {"X-API-Token": "Bearer unknown-token"},
        401,
        INVALID,
        'Bearer realm="events-api", error="invalid_token", '
        'error_description="The access token is invalid or has expired"',
    )
    echo = await _echo(
        client,
        f"{gw.url}/events/echo",
        {"X-API-Token": f"Bearer {token}", "Authorization": "Basic eDp5"},
    )
    seen = _seen(echo)
    assert seen["x-consumer-username"] == ["ClientApp"]
    assert "x-api-token" not in seen  # hide_credentials hides the configured header
    assert seen["authorization"] == ["Basic eDp5"]  # another header, passed on as is


# --- expiry ----------------------------------------------------------------------------------


async def test_token_works_at_once_and_is_invalid_after_it_expires(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
    clock: Clock,
) -> None:
    gw = await _start(gateway, backend, tmp_path, token_expiration=1)
    issued = await _issue(client, gw)
    assert issued["expires_in"] == 1
    token = str(issued["access_token"])
    echo = await _echo(client, f"{gw.url}/events/echo", _bearer(token))  # now cached
    assert _seen(echo)["x-authenticated-userid"] == ["user-1"]
    clock.advance(2.1)
    await _expect_refusal(
        client, f"{gw.url}/events/echo", _bearer(token), 401, INVALID, INVALID_CHALLENGE
    )


# --- the token in the query string -----------------------------------------------------------


async def test_query_token_is_ignored_by_default_so_the_token_is_missing(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    await _expect_refusal(
        client, f"{gw.url}/events/echo?access_token={token}", None, 401, MISSING, BARE_CHALLENGE
    )


async def test_query_access_token_is_not_forwarded_under_hide_credentials_by_default(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Design §3: the upstream query is the client's "minus access_token when hide_credentials";
    # a client that sends its token both ways must not leak it into the backend's logs.
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    echo = await _echo(client, f"{gw.url}/events/echo?a=1&access_token={token}&b=2", _bearer(token))
    assert echo["query"] == "a=1&b=2"
    assert token not in orjson.dumps(echo).decode()


async def test_query_token_accepted_when_enabled_and_hidden_from_the_backend(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, accept_token_in_query=True)
    token = await _token(client, gw)
    echo = await _echo(client, f"{gw.url}/events/echo?a=1&access_token={token}&b=x%20y")
    assert echo["query"] == "a=1&b=x%20y"
    seen = _seen(echo)
    assert seen["x-consumer-username"] == ["ClientApp"]
    assert token not in orjson.dumps(echo).decode()


async def test_query_token_kept_for_the_backend_without_hide_credentials(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(
        gateway, backend, tmp_path, accept_token_in_query=True, hide_credentials=False
    )
    token = await _token(client, gw)
    echo = await _echo(client, f"{gw.url}/events/echo?access_token={token}&a=1")
    assert echo["query"] == f"access_token={token}&a=1"
    assert _seen(echo)["x-credential-identifier"] == ["clientid"]


async def test_token_in_header_and_query_or_twice_in_query_is_400(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, accept_token_in_query=True)
    token = await _token(client, gw)
    await _expect_refusal(
        client,
        f"{gw.url}/events/echo?access_token={token}",
        _bearer(token),
        400,
        {
            "error": "invalid_request",
            "error_description": "The access token was sent in more than one place",
        },
        None,
    )
    await _expect_refusal(
        client,
        f"{gw.url}/events/echo?access_token={token}&x=1&access_token={token}",
        None,
        400,
        {"error": "invalid_request", "error_description": "More than one access_token was sent"},
        None,
    )


# --- hide_credentials ------------------------------------------------------------------------


async def test_hide_credentials_false_passes_the_authorization_header_on(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, hide_credentials=False)
    token = await _token(client, gw)
    seen = _seen(await _echo(client, f"{gw.url}/events/echo", _bearer(token)))
    assert seen["authorization"] == [f"Bearer {token}"]
    assert seen["x-consumer-username"] == ["ClientApp"]


async def test_hide_credentials_default_strips_the_authorization_header(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    echo = await _echo(client, f"{gw.url}/events/echo", _bearer(token))
    seen = _seen(echo)
    assert "authorization" not in seen
    assert seen["x-consumer-username"] == ["ClientApp"]
    assert token not in orjson.dumps(echo).decode()


# --- identity headers (design §5 step 4) -----------------------------------------------------


async def test_spoofed_identity_headers_never_reach_the_backend_and_real_ones_are_set(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw, scope="read")
    spoofed = {
        **_bearer(token),
        "X-Consumer-ID": "spoofed-id",
        "X-Consumer-Username": "admin",
        "X-Consumer-Custom-ID": "spoofed-custom",
        "X_Authenticated_Userid": "root",
        "X-Authenticated-Scope": "admin",
        "X-Credential-Identifier": "spoofed-client",
        "X-Anonymous-Consumer": "true",
    }
    echo = await _echo(client, f"{gw.url}/events/echo", spoofed)
    assert _identity(_seen(echo)) == {
        "x-consumer-id": [await _consumer_id(gw, "ClientApp")],
        "x-consumer-custom-id": ["client-app-1"],
        "x-consumer-username": ["ClientApp"],
        "x-credential-identifier": ["clientid"],
        "x-authenticated-scope": ["read"],
        "x-authenticated-userid": ["user-1"],
    }


async def test_no_scope_header_when_no_scope_was_granted(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    issued = await _issue(client, gw)
    assert "scope" not in issued
    echo = await _echo(
        client,
        f"{gw.url}/events/echo",
        {**_bearer(str(issued["access_token"])), "X-Authenticated-Scope": "read write"},
    )
    identity = _identity(_seen(echo))
    assert "x-authenticated-scope" not in identity
    assert identity["x-credential-identifier"] == ["clientid"]


# --- service binding and global_credentials (design §5 step 3) -------------------------------


async def test_a_token_is_bound_to_the_service_that_issued_it(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(
        [events_service(backend), _reports_service(backend)], consumers=consumers(tmp_path)
    )
    events_token = await _token(client, gw)
    reports_token = await _token(client, gw, prefix="/reports", provision_key=REPORTS_KEY)
    await _expect_refusal(
        client, f"{gw.url}/reports/echo", _bearer(events_token), 401, INVALID, INVALID_CHALLENGE
    )
    await _expect_refusal(
        client, f"{gw.url}/events/echo", _bearer(reports_token), 401, INVALID, INVALID_CHALLENGE
    )
    # Each still works where it was issued (the refusals above were cached entries, too).
    echo = await _echo(client, f"{gw.url}/events/echo", _bearer(events_token))
    assert echo["path"] == "/api/events/echo"
    echo = await _echo(client, f"{gw.url}/reports/echo", _bearer(reports_token))
    assert echo["path"] == "/api/reports/echo"
    assert _seen(echo)["x-consumer-username"] == ["ClientApp"]


async def test_global_credentials_tokens_work_on_every_global_service(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(
        [
            events_service(backend, global_credentials=True),
            _reports_service(backend, global_credentials=True),
        ],
        consumers=consumers(tmp_path),
    )
    events_token = await _token(client, gw)
    reports_token = await _token(client, gw, prefix="/reports", provision_key=REPORTS_KEY)
    for token in (events_token, reports_token):
        for prefix in ("/events", "/reports"):
            echo = await _echo(client, f"{gw.url}{prefix}/echo", _bearer(token))
            assert echo["path"] == f"/api{prefix}/echo"
            assert _seen(echo)["x-credential-identifier"] == ["clientid"]


async def test_a_global_token_is_refused_on_a_service_without_global_credentials(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway(
        [events_service(backend, global_credentials=True), _reports_service(backend)],
        consumers=consumers(tmp_path),
    )
    global_token = await _token(client, gw)
    await _expect_refusal(
        client, f"{gw.url}/reports/echo", _bearer(global_token), 401, INVALID, INVALID_CHALLENGE
    )
    echo = await _echo(client, f"{gw.url}/events/echo", _bearer(global_token))
    assert _seen(echo)["x-consumer-username"] == ["ClientApp"]
    # A token bound to reports is not global either: refused on the global events service.
    reports_token = await _token(client, gw, prefix="/reports", provision_key=REPORTS_KEY)
    await _expect_refusal(
        client, f"{gw.url}/events/echo", _bearer(reports_token), 401, INVALID, INVALID_CHALLENGE
    )


# --- required_scopes (beyond Kong, RFC 6750 §3.1) --------------------------------------------


async def test_required_scopes_on_a_route_answer_403_insufficient_scope(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    events = events_service(backend)
    events["routes"] = [
        {"name": "events-route", "paths": ["/events"], "strip_path": False},
        {
            "name": "events-admin",
            "paths": ["/events/admin"],
            "strip_path": False,
            "required_scopes": ["write"],
        },
    ]
    gw = await gateway([events], consumers=consumers(tmp_path))
    read_only = await _token(client, gw, scope="read")
    read_write = await _token(client, gw, scope="read write")
    await _expect_refusal(
        client,
        f"{gw.url}/events/admin/echo",
        _bearer(read_only),
        403,
        {
            "error": "insufficient_scope",
            "error_description": "The access token does not carry the scope this route requires",
        },
        'Bearer realm="edgeauth", error="insufficient_scope", scope="write"',
    )
    # The same token passes on the route that requires nothing.
    echo = await _echo(client, f"{gw.url}/events/echo", _bearer(read_only))
    assert _seen(echo)["x-authenticated-scope"] == ["read"]
    echo = await _echo(client, f"{gw.url}/events/admin/echo", _bearer(read_write))
    assert echo["path"] == "/api/events/admin/echo"
    assert _seen(echo)["x-authenticated-scope"] == ["read write"]
    # Still 401 (not 403) without a valid token.
    await _expect_refusal(client, f"{gw.url}/events/admin/echo", None, 401, MISSING, BARE_CHALLENGE)


# --- anonymous -------------------------------------------------------------------------------


async def test_anonymous_consumer_stands_in_for_a_missing_or_invalid_token(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(
        gateway, backend, tmp_path, anonymous="Guest", extra_consumers=[{"username": "Guest"}]
    )
    guest = {
        "x-consumer-id": [await _consumer_id(gw, "Guest")],
        "x-consumer-username": ["Guest"],
        "x-anonymous-consumer": ["true"],
    }
    for headers in (
        None,
        _bearer("unknown-token-" + "u" * 30),
        {"X-Consumer-Username": "ClientApp", "X-Credential-Identifier": "clientid"},
        {"Authorization": "Basic eDp5"},
    ):
        echo = await _echo(client, f"{gw.url}/events/echo", headers)
        assert _identity(_seen(echo)) == guest, headers

    token = await _token(client, gw, scope="write")
    echo = await _echo(
        client, f"{gw.url}/events/echo", {**_bearer(token), "X-Anonymous-Consumer": "true"}
    )
    identity = _identity(_seen(echo))
    assert "x-anonymous-consumer" not in identity
    assert identity["x-consumer-username"] == ["ClientApp"]
    assert identity["x-credential-identifier"] == ["clientid"]
    assert identity["x-authenticated-scope"] == ["write"]


async def test_anonymous_never_stands_in_for_a_store_failure(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(
        gateway, backend, tmp_path, anonymous="Guest", extra_consumers=[{"username": "Guest"}]
    )
    token = await _token(client, gw)
    store = gw.gateway.c.store
    assert store is not None
    await store.close()
    async with client.get(f"{gw.url}/events/echo", headers=_bearer(token)) as resp:
        assert resp.status == 503
        assert await resp.json() == UNAVAILABLE
        assert resp.headers["Retry-After"] == "1"
        assert "WWW-Authenticate" not in resp.headers


# --- Expect: 100-continue --------------------------------------------------------------------


async def test_expect_continue_with_an_invalid_token_is_401_and_never_100(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    head = (
        b"POST /events/echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer bogus-token\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    response = await raw_exchange(gw.port, client_ssl, head, read_timeout=5)
    assert b"100 Continue" not in response
    assert status_of(response) == 401, response
    assert body_of(response) == INVALID
    lowered = response.lower()
    assert b"\r\ncontent-type: application/json" in lowered
    assert f"\r\nwww-authenticate: {INVALID_CHALLENGE}\r\n".lower().encode() in lowered


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return head, body


async def test_expect_continue_with_a_valid_token_gets_100_then_the_upstream_answer(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    payload = b"hello, events"
    head = (
        f"POST /events/echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(payload)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=client_ssl, server_hostname="localhost"
    )
    try:
        writer.write(head)
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(payload)
        await writer.drain()
        final, body = await _read_response(reader)
    finally:
        writer.close()
    assert final.startswith(b"HTTP/1.1 200 "), final
    assert b"\r\ncontent-type: application/json" in final.lower()
    echo = orjson.loads(body)
    assert echo["path"] == "/api/events/echo"
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    seen = _seen(echo)
    assert "expect" not in seen
    assert "authorization" not in seen
    assert seen["x-consumer-username"] == ["ClientApp"]


# --- store failures fail closed (design §4.5, §8) --------------------------------------------


async def test_store_failure_is_503_for_every_token_once_revocations_cannot_be_followed(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    used = await _token(client, gw)
    await _echo(client, f"{gw.url}/events/echo", _bearer(used))  # validated: now cached
    unused = await _token(client, gw)  # issued but never presented: not cached
    store = gw.gateway.c.store
    assert store is not None
    await store.close()

    for token in (unused, "never-issued-" + "n" * 30):
        async with client.get(f"{gw.url}/events/echo", headers=_bearer(token)) as resp:
            assert resp.status == 503
            assert resp.content_type == "application/json"
            assert await resp.json() == UNAVAILABLE
            assert resp.headers["Retry-After"] == "1"
            assert "WWW-Authenticate" not in resp.headers

    # Fail closed (design §8): once the revocation log cannot be read, a cached token may
    # have been revoked elsewhere, so the cache is dropped and the cached token gets 503 too
    # (within a few poll intervals of the outage).
    status = 200
    for _ in range(100):
        async with client.get(f"{gw.url}/events/echo", headers=_bearer(used)) as resp:
            status = resp.status
        if status == 503:
            break
        await asyncio.sleep(0.02)
    assert status == 503


async def test_token_endpoint_answers_503_when_the_store_is_closed(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    store = gw.gateway.c.store
    assert store is not None
    await store.close()
    # The gateway's first request: the client's secret has never been verified (no memo).
    login = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "user-1",
    }
    async with client.post(f"{gw.url}/events/oauth2/token", json=login) as resp:
        assert resp.status == 503
        assert resp.content_type == "application/json"
        assert await resp.json() == UNAVAILABLE
        assert resp.headers["Retry-After"] == "1"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"


# --- the access log (design §9) --------------------------------------------------------------


async def test_access_log_names_consumer_and_client_but_never_the_token(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, accept_token_in_query=True)
    issued = await _issue(client, gw)
    token = str(issued["access_token"])
    refresh = str(issued["refresh_token"])
    echo = await _echo(client, f"{gw.url}/events/echo?x=1", _bearer(token))
    assert echo["query"] == "x=1"
    echo = await _echo(client, f"{gw.url}/events/echo?access_token={token}")
    assert echo["query"] == ""
    await _expect_refusal(
        client, f"{gw.url}/events/echo", _bearer("bad-" + token), 401, INVALID, INVALID_CHALLENGE
    )

    entries = gw.access_log()
    for _ in range(100):  # the access log is written in batches
        if len([e for e in entries if e["path"] == "/events/echo"]) >= 3:
            break
        await asyncio.sleep(0.05)
        entries = gw.access_log()
    proxied = [e for e in entries if e["path"] == "/events/echo"]
    ok = [e for e in proxied if e["status"] == 200]
    assert len(ok) == 2
    for entry in ok:
        assert entry["consumer"] == "ClientApp"
        assert entry["client_id"] == "clientid"
        assert entry["service"] == "events"
        assert entry["route"] == "events-route"
    refused = [e for e in proxied if e["status"] == 401]
    assert len(refused) == 1
    assert refused[0]["consumer"] is None
    assert refused[0]["client_id"] is None
    raw = (tmp_path / "access.log").read_bytes()
    for secret in (token, refresh, SECRET, PROVISION_KEY):
        assert secret.encode() not in raw
