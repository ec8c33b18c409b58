"""The authorization code grant and PKCE over real HTTPS (design §4.1, §4.2, §4.5, §4.6).

The test plays the resource owner's backend: it POSTs to `<route>/oauth2/authorize` with the
provision key and the user it vouches for, reads Kong's `{"redirect_uri": ...}` answer, and
then plays the client app at the token endpoint. Every answer is checked for status, exact
JSON body and the headers every OAuth endpoint answer carries.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from edgeauth import crypto
from edgeauth.models import AuthCode
from edgeauth.oauth.pkce import s256
from tests.conftest import Backend, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
USERID = "user-4711"
STATE = "xyz"
CALLBACK = "https://app.example/callback"
MOBILE = "https://mobile.example/cb"
MULTI_FIRST = "https://multi.example/first"
MULTI_QUERY = "https://multi.example/second?tenant=acme&lang=en"
MULTI_SECRET = "multi-secret-0451"
REPORTS_KEY = "pk-" + "r" * 40
VERIFIER = "v" * 20 + "-._~" + "A9" * 10  # 44 characters of the RFC 7636 alphabet

INVALID_CODE = {"error": "invalid_grant", "error_description": "Invalid code"}
REDIRECT_MISMATCH = {
    "error": "invalid_grant",
    "error_description": "redirect_uri does not match the authorization request",
}
VERIFIER_MISMATCH = {
    "error": "invalid_grant",
    "error_description": "code_verifier does not match the code_challenge",
}
VERIFIER_REQUIRED = {
    "error": "invalid_request",
    "error_description": "code_verifier is required for PKCE authorization requests",
}
VERIFIER_MALFORMED = {
    "error": "invalid_request",
    "error_description": "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]",
}
DOWNGRADE = {
    "error": "invalid_grant",
    "error_description": "code_verifier was sent for a code issued without PKCE",
}
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token is invalid or has expired",
}
INVALID_TOKEN_CHALLENGE = (
    'Bearer realm="edgeauth", error="invalid_token", '
    'error_description="The access token is invalid or has expired"'
)
FULL = {"access_token", "token_type", "expires_in", "refresh_token"}


# helpers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    body: dict[str, Any]


async def post(
    client: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    *,
    as_json: bool = False,
) -> Answer:
    """One OAuth endpoint request; asserts the headers of every such answer (design §4)."""
    kwargs: dict[str, Any] = {"json": dict(params)} if as_json else {"data": dict(params)}
    async with client.post(url, **kwargs) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"] == "application/json", raw
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        body = orjson.loads(raw)
        assert isinstance(body, dict)
        return Answer(resp.status, resp.headers, raw, body)


def with_query(base: str, params: list[tuple[str, str]]) -> str:
    return base + ("&" if "?" in base else "?") + urlencode(params)


def params_of(base: Mapping[str, str], overrides: Mapping[str, str | None]) -> dict[str, str]:
    merged: dict[str, str | None] = {**base, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


def authorize_params(**overrides: str | None) -> dict[str, str]:
    """What the resource owner's backend sends for ClientApp's SampleApp; None drops a key."""
    base = {
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        "client_id": "clientid",
        "response_type": "code",
        "state": STATE,
    }
    return params_of(base, overrides)


async def authorize(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    prefix: str = "/events",
    **overrides: str | None,
) -> Answer:
    return await post(client, f"{gw.url}{prefix}/oauth2/authorize", authorize_params(**overrides))


def code_of(answer: Answer, base: str = CALLBACK, state: str | None = STATE) -> str:
    """The code of a 200 authorize answer, checking the redirect URI exactly (design §4.2)."""
    assert answer.status == 200, answer.raw
    assert set(answer.body) == {"redirect_uri"}, answer.body
    uri: str = answer.body["redirect_uri"]
    assert uri.startswith(base + ("&" if "?" in base else "?")), uri
    pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    registered = parse_qsl(urlsplit(base).query, keep_blank_values=True)
    assert pairs[: len(registered)] == registered
    added = pairs[len(registered) :]
    assert [name for name, _ in added] == ["code"] + (["state"] if state is not None else [])
    code = added[0][1]
    assert TOKEN_SHAPE.fullmatch(code)
    if state is not None:
        assert added[1] == ("state", state)
    assert uri == with_query(base, added)
    assert urlsplit(uri).fragment == ""
    return code


def assert_redirect_error(
    answer: Answer,
    error: str,
    description: str,
    *,
    base: str = CALLBACK,
    state: str | None = STATE,
) -> None:
    """400 `{"redirect_uri": "<uri>?error=...&error_description=...&state=..."}` (§4.2)."""
    pairs = [("error", error), ("error_description", description)]
    if state is not None:
        pairs.append(("state", state))
    assert (answer.status, answer.body) == (400, {"redirect_uri": with_query(base, pairs)})
    assert "WWW-Authenticate" not in answer.headers


def assert_plain_error(answer: Answer, error: str, description: str) -> None:
    assert (answer.status, answer.body) == (400, {"error": error, "error_description": description})
    assert "WWW-Authenticate" not in answer.headers


def assert_refused(answer: Answer, expected: Mapping[str, str]) -> None:
    assert (answer.status, answer.body) == (400, expected), answer.raw
    assert "WWW-Authenticate" not in answer.headers


async def exchange(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    code: str,
    *,
    prefix: str = "/events",
    client_id: str = "clientid",
    secret: str | None = SECRET,
    **extra: str | None,
) -> Answer:
    base = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
    if secret is not None:
        base["client_secret"] = secret
    return await post(client, f"{gw.url}{prefix}/oauth2/token", params_of(base, extra))


def assert_tokens(answer: Answer, scope: str | None = None) -> tuple[str, str]:
    members = FULL | ({"scope"} if scope else set())
    assert answer.status == 200, answer.raw
    assert set(answer.body) == members, answer.body
    assert answer.body["token_type"] == "bearer"
    assert answer.body["expires_in"] == 7200
    assert TOKEN_SHAPE.fullmatch(answer.body["access_token"])
    assert TOKEN_SHAPE.fullmatch(answer.body["refresh_token"])
    if scope:
        assert answer.body["scope"] == scope
    return answer.body["access_token"], answer.body["refresh_token"]


async def echo(
    client: aiohttp.ClientSession, gw: RunningGateway, token: str, prefix: str = "/events"
) -> dict[str, list[str]]:
    """The identity headers the backend saw for a call made with `token`."""
    headers = {"Authorization": f"Bearer {token}"}
    async with client.get(f"{gw.url}{prefix}/echo", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
    seen: dict[str, list[str]] = {}
    for name, value in doc["headers"]:
        seen.setdefault(str(name).lower(), []).append(str(value))
    return seen


async def assert_dead(
    client: aiohttp.ClientSession, gw: RunningGateway, token: str, prefix: str = "/events"
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with client.get(f"{gw.url}{prefix}/echo", headers=headers) as resp:
        assert resp.status == 401
        assert await resp.json() == INVALID_TOKEN
        assert resp.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE


def people(tmp_path: Path) -> list[dict[str, Any]]:
    """The walkthrough's consumers plus MultiApp, whose second redirect URI has a query."""
    everyone = consumers(tmp_path)
    everyone[0]["oauth2"].append(
        {
            "name": "MultiApp",
            "client_id": "multiclient",
            "client_secret": MULTI_SECRET,
            "redirect_uris": [MULTI_FIRST, MULTI_QUERY],
        }
    )
    return everyone


def reports_service(backend: Backend, **oauth2: Any) -> dict[str, Any]:
    """A second protected service with its own provision key, on /reports."""
    policy: dict[str, Any] = {
        "scopes": ["read", "write"],
        "provision_key": REPORTS_KEY,
        "enable_authorization_code": True,
        **oauth2,
    }
    return service("reports", backend.url + "/api", ["/reports"], strip_path=False, oauth2=policy)


async def start(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **oauth2: Any
) -> RunningGateway:
    settings = {"enable_authorization_code": True, **oauth2}
    return await gateway([events_service(backend, **settings)], consumers=people(tmp_path))


@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    """Authorization code enabled, `pkce = "lax"` (the default)."""
    return await start(gateway, backend, tmp_path)


# authorize: order of checks (design §4.6) -------------------------------------------------
async def test_bad_provision_key_wins_over_every_later_problem(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for key in ("pk-wrong-" + "z" * 30, None, ""):
        answer = await authorize(
            client,
            gw,
            provision_key=key,
            authenticated_userid=None,
            client_id="nobody",
            redirect_uri="https://evil.example/",
            response_type="bogus",
        )
        assert_plain_error(answer, "invalid_provision_key", "Invalid provision_key")
        assert "zzzz" not in answer.raw.decode()


async def test_missing_authenticated_userid_comes_next(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for userid in (None, "", " ", "\t\n", "\u00a0 \u3000"):  # blank is missing
        answer = await authorize(
            client,
            gw,
            authenticated_userid=userid,
            client_id="nobody",
            redirect_uri="https://evil.example/",
        )
        assert_plain_error(
            answer, "invalid_authenticated_userid", "Missing authenticated_userid parameter"
        )


async def test_unknown_client_is_a_plain_invalid_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for client_id in ("nobody", None):
        answer = await authorize(
            client, gw, client_id=client_id, redirect_uri="https://evil.example/", scope="admin"
        )
        assert_plain_error(answer, "invalid_client", "Invalid client authentication")


UNREGISTERED = (
    "https://evil.example/callback",
    "https://other.example/cb",  # registered, but by another client
    CALLBACK + "/more",
    CALLBACK + "?x=1",
    CALLBACK + "#frag",
    "https://APP.example/callback",
    "",
)


async def test_unregistered_redirect_uri_is_plain_invalid_request_never_a_redirect(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for redirect_uri in UNREGISTERED:
        answer = await authorize(
            client, gw, redirect_uri=redirect_uri, response_type="bogus", scope="admin"
        )
        assert_plain_error(
            answer, "invalid_request", "Invalid redirect_uri that does not match the application's"
        )


async def test_response_type_errors_go_to_the_redirect_uri(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    # An unsupported response_type wins over a bad scope and a bad PKCE challenge.
    answer = await authorize(client, gw, response_type="bogus", scope="admin", code_challenge="x")
    assert_redirect_error(answer, "unsupported_response_type", "Invalid response_type")
    # Missing response_type: Kong's answer for anything but code/token.
    answer = await authorize(client, gw, response_type=None)
    assert_redirect_error(answer, "unsupported_response_type", "Invalid response_type")
    # No state sent: none echoed.
    answer = await authorize(client, gw, response_type="bogus", state=None)
    assert_redirect_error(answer, "unsupported_response_type", "Invalid response_type", state=None)


async def test_bad_scope_goes_to_the_redirect_uri_before_pkce(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, scope="read admin", code_challenge="short")
    assert_redirect_error(answer, "invalid_scope", "The requested scope is invalid or unknown")
    answer = await authorize(client, gw, scope="admin", redirect_uri=CALLBACK, state="s p&c=e")
    assert_redirect_error(
        answer, "invalid_scope", "The requested scope is invalid or unknown", state="s p&c=e"
    )


async def test_mandatory_scope_without_scope_goes_to_the_redirect_uri(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, mandatory_scope=True)
    answer = await authorize(client, gw)
    assert_redirect_error(answer, "invalid_scope", "You must specify a scope")


async def test_errors_on_a_registered_uri_with_a_query_keep_that_query(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(
        client, gw, client_id="multiclient", redirect_uri=MULTI_QUERY, response_type="bogus"
    )
    assert_redirect_error(
        answer, "unsupported_response_type", "Invalid response_type", base=MULTI_QUERY
    )


# authorize: success -----------------------------------------------------------------------
async def test_authorize_answers_the_redirect_uri_with_code_and_state(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, redirect_uri=CALLBACK, scope="read")
    code = code_of(answer)
    assert answer.body["redirect_uri"] == f"{CALLBACK}?code={code}&state={STATE}"
    # Kong's JSON bodies work as well as form bodies, and no state means none echoed.
    answer = await post(
        client,
        f"{gw.url}/events/oauth2/authorize",
        authorize_params(state=None),
        as_json=True,
    )
    code_of(answer, state=None)


async def test_a_state_needing_encoding_is_echoed_intact(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    state = "a b&c=d/é"
    answer = await authorize(client, gw, state=state)
    code_of(answer, state=state)


async def test_each_authorize_gives_a_fresh_code(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    codes = {code_of(await authorize(client, gw)) for _ in range(3)}
    assert len(codes) == 3


async def test_default_redirect_uri_is_the_first_registered(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, client_id="multiclient")
    code = code_of(answer, base=MULTI_FIRST)
    # Not named at authorize: the token request need not name it either.
    tokens = await exchange(client, gw, code, client_id="multiclient", secret=MULTI_SECRET)
    assert_tokens(tokens)


async def test_a_registered_redirect_uri_with_a_query_keeps_it(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, client_id="multiclient", redirect_uri=MULTI_QUERY)
    code = code_of(answer, base=MULTI_QUERY)
    assert answer.body["redirect_uri"] == f"{MULTI_QUERY}&code={code}&state={STATE}"
    tokens = await exchange(
        client, gw, code, client_id="multiclient", secret=MULTI_SECRET, redirect_uri=MULTI_QUERY
    )
    assert_tokens(tokens)


async def test_a_redirect_uri_registered_through_the_admin_api(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    uri = "https://admin.example/cb?app=7"
    app = {"name": "Added", "client_id": "addedclient", "redirect_uris": [uri]}
    secret = (await _admin(gw, "POST", "/consumers/ClientApp/oauth2", app))["client_secret"]
    code = code_of(await authorize(client, gw, client_id="addedclient"), base=uri)
    tokens = await exchange(client, gw, code, client_id="addedclient", secret=secret)
    assert_tokens(tokens)


async def test_a_code_in_the_registered_query_is_replaced_not_repeated(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A client reading the first `code` of its callback must get ours: a registered
    `code` (or `state`) is replaced; the registered query's other parameters stay as
    registered, in their order."""
    uri = "https://admin.example/cb?code=stale&app=7&state=old&x=a%20b"
    app = {"name": "Stale", "client_id": "staleclient", "redirect_uris": [uri]}
    secret = (await _admin(gw, "POST", "/consumers/ClientApp/oauth2", app))["client_secret"]
    answer = await authorize(client, gw, client_id="staleclient")
    assert answer.status == 200, answer.raw
    sent = answer.body["redirect_uri"]
    pairs = parse_qsl(urlsplit(sent).query)
    assert [name for name, _ in pairs] == ["app", "x", "code", "state"]
    code = dict(pairs)["code"]
    assert sent == f"https://admin.example/cb?app=7&x=a%20b&code={code}&state={STATE}"
    tokens = await exchange(
        client, gw, code, client_id="staleclient", secret=secret, redirect_uri=uri
    )
    assert_tokens(tokens)


async def _admin(gw: RunningGateway, method: str, path: str, body: dict[str, Any]) -> Any:
    """One admin API call that must succeed; its JSON body."""
    async with (
        aiohttp.ClientSession(headers=gw.admin_headers) as admin,
        admin.request(method, f"{gw.admin_url}{path}", json=body) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def test_dropping_a_redirect_uri_drops_the_codes_delivered_to_it(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Issue 13, point 6: a code must not outlive the registration of the URI it went to.
    (An application of the admin API's: config.toml's own cannot be changed there.)"""
    app = {"name": "Droppy", "client_id": "droppy", "redirect_uris": [MULTI_FIRST, MULTI_QUERY]}
    secret = (await _admin(gw, "POST", "/consumers/ClientApp/oauth2", app))["client_secret"]
    named = code_of(
        await authorize(client, gw, client_id="droppy", redirect_uri=MULTI_QUERY),
        base=MULTI_QUERY,
    )
    default = code_of(await authorize(client, gw, client_id="droppy"), base=MULTI_FIRST)
    kept = code_of(
        await authorize(client, gw, client_id="droppy", redirect_uri=MULTI_FIRST),
        base=MULTI_FIRST,
    )
    await _admin(gw, "PATCH", "/oauth2/droppy", {"redirect_uris": [MULTI_FIRST]})
    gone = await exchange(
        client, gw, named, client_id="droppy", secret=secret, redirect_uri=MULTI_QUERY
    )
    assert_refused(gone, INVALID_CODE)
    # Codes delivered to the URI still registered (named, or as the default) stay good.
    assert_tokens(await exchange(client, gw, default, client_id="droppy", secret=secret))
    kept_tokens = await exchange(
        client, gw, kept, client_id="droppy", secret=secret, redirect_uri=MULTI_FIRST
    )
    assert_tokens(kept_tokens)


async def test_authorization_code_disabled_is_unsupported(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, enable_authorization_code=False)
    answer = await authorize(client, gw)
    assert_redirect_error(answer, "unsupported_response_type", "Invalid response_type")
    tokens = await exchange(client, gw, "c" * 43)
    assert_refused(
        tokens, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
    )


# token endpoint ---------------------------------------------------------------------------
async def test_code_exchange_issues_a_pair_and_identity_reaches_the_backend(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw, scope="read write", redirect_uri=CALLBACK))
    answer = await exchange(client, gw, code, redirect_uri=CALLBACK, state="tok-state")
    assert answer.body.pop("state") == "tok-state"
    access, refresh = assert_tokens(answer, scope="read write")
    seen = await echo(client, gw, access)
    assert seen["x-consumer-username"] == ["ClientApp"]
    assert seen["x-consumer-custom-id"] == ["client-app-1"]
    assert seen["x-credential-identifier"] == ["clientid"]
    assert seen["x-authenticated-userid"] == [USERID]
    assert seen["x-authenticated-scope"] == ["read write"]
    assert len(seen["x-consumer-id"]) == 1
    assert "authorization" not in seen
    # The refresh token works and keeps the user.
    refreshed = await post(
        client,
        f"{gw.url}/events/oauth2/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "clientid",
            "client_secret": SECRET,
        },
    )
    new_access, _ = assert_tokens(refreshed, scope="read write")
    assert (await echo(client, gw, new_access))["x-authenticated-userid"] == [USERID]


async def test_code_replay_is_invalid_grant_and_revokes_what_the_code_gave(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw))
    access, refresh = assert_tokens(await exchange(client, gw, code))
    await echo(client, gw, access)  # now cached as valid
    assert_refused(await exchange(client, gw, code), INVALID_CODE)
    await assert_dead(client, gw, access)
    refused = await post(
        client,
        f"{gw.url}/events/oauth2/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "clientid",
            "client_secret": SECRET,
        },
    )
    assert_refused(
        refused, {"error": "invalid_grant", "error_description": "Invalid refresh_token"}
    )


async def test_code_replay_also_revokes_tokens_rotated_from_the_code(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw))
    _, refresh = assert_tokens(await exchange(client, gw, code))
    rotated = await post(
        client,
        f"{gw.url}/events/oauth2/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "clientid",
            "client_secret": SECRET,
        },
    )
    new_access, _ = assert_tokens(rotated)
    await echo(client, gw, new_access)
    assert_refused(await exchange(client, gw, code), INVALID_CODE)
    await assert_dead(client, gw, new_access)


async def test_a_code_is_bound_to_its_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw))
    answer = await exchange(client, gw, code, client_id="otherclient", secret="other-secret")
    assert_refused(answer, INVALID_CODE)
    # Another client of the same consumer is just as foreign.
    code = code_of(await authorize(client, gw))
    answer = await exchange(client, gw, code, client_id="multiclient", secret=MULTI_SECRET)
    assert_refused(answer, INVALID_CODE)


async def test_a_wrong_client_secret_is_invalid_client_before_the_code_is_looked_at(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw))
    answer = await exchange(client, gw, code, secret="wrong-secret-123")
    assert (answer.status, answer.body) == (
        400,
        {"error": "invalid_client", "error_description": "Invalid client authentication"},
    )
    # The code was not consumed by the failed attempt.
    assert_tokens(await exchange(client, gw, code))


@pytest.mark.parametrize("global_credentials", [False, True])
async def test_a_code_is_bound_to_its_service(
    gateway: GatewayFactory,
    backend: Backend,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    global_credentials: bool,
) -> None:
    gw = await gateway(
        [
            events_service(
                backend, enable_authorization_code=True, global_credentials=global_credentials
            ),
            reports_service(backend, global_credentials=global_credentials),
        ],
        consumers=people(tmp_path),
    )
    events_code = code_of(await authorize(client, gw))
    assert_refused(await exchange(client, gw, events_code, prefix="/reports"), INVALID_CODE)
    reports_code = code_of(await authorize(client, gw, "/reports", provision_key=REPORTS_KEY))
    assert_refused(await exchange(client, gw, reports_code, prefix="/events"), INVALID_CODE)
    # Each service's key is its own: events' key does not authorize on reports.
    answer = await authorize(client, gw, "/reports")
    assert_plain_error(answer, "invalid_provision_key", "Invalid provision_key")
    # Where it was issued, a code works; under global_credentials its token works everywhere.
    reports_code = code_of(await authorize(client, gw, "/reports", provision_key=REPORTS_KEY))
    access, _ = assert_tokens(await exchange(client, gw, reports_code, prefix="/reports"))
    await echo(client, gw, access, "/reports")
    if global_credentials:
        await echo(client, gw, access, "/events")
    else:
        await assert_dead(client, gw, access, "/events")


async def test_redirect_uri_must_match_at_token_time(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for wrong in ("https://evil.example/callback", CALLBACK + "/", "https://other.example/cb"):
        code = code_of(await authorize(client, gw, redirect_uri=CALLBACK))
        assert_refused(await exchange(client, gw, code, redirect_uri=wrong), REDIRECT_MISMATCH)
    # Named at authorize, omitted at token time: refused (RFC 6749 §4.1.3).
    code = code_of(await authorize(client, gw, redirect_uri=CALLBACK))
    assert_refused(await exchange(client, gw, code), REDIRECT_MISMATCH)
    # The query of a registered URI is part of it.
    code = code_of(
        await authorize(client, gw, client_id="multiclient", redirect_uri=MULTI_QUERY),
        base=MULTI_QUERY,
    )
    answer = await exchange(
        client,
        gw,
        code,
        client_id="multiclient",
        secret=MULTI_SECRET,
        redirect_uri="https://multi.example/second",
    )
    assert_refused(answer, REDIRECT_MISMATCH)


async def test_missing_code_is_invalid_request_and_unknown_code_invalid_grant(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await exchange(client, gw, "")
    assert_refused(
        answer, {"error": "invalid_request", "error_description": "Missing code parameter"}
    )
    assert_refused(await exchange(client, gw, crypto.mint()), INVALID_CODE)


async def _stored_code(gw: RunningGateway, *, age: float, lifetime: float = 60) -> str:
    """A code saved straight into the store, issued `age` seconds ago."""
    store = gw.gateway.c.store
    assert store is not None
    credential = await store.find_credential("clientid")
    assert credential is not None
    code = crypto.mint()
    now = time.time()
    await store.save_code(
        AuthCode(
            digest=crypto.digest(code),
            credential_id=credential.id,
            service="events",
            authenticated_userid=USERID,
            scope="read",
            redirect_uri=None,
            code_challenge=None,
            code_challenge_method=None,
            created_at=now - age,
            expires_at=now - age + lifetime,
        )
    )
    return code


async def test_an_expired_code_is_invalid_grant(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    # Control: a fresh code saved the same way works.
    fresh = await _stored_code(gw, age=1)
    access, _ = assert_tokens(await exchange(client, gw, fresh), scope="read")
    assert (await echo(client, gw, access))["x-authenticated-userid"] == [USERID]
    expired = await _stored_code(gw, age=61)
    assert_refused(await exchange(client, gw, expired), INVALID_CODE)


async def test_fifty_concurrent_exchanges_of_one_code_have_exactly_one_winner(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    assert_tokens(await exchange(client, gw, code_of(await authorize(client, gw))))  # warm up
    code = code_of(await authorize(client, gw))
    answers = await asyncio.gather(*(exchange(client, gw, code) for _ in range(50)))
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1
    assert_tokens(winners[0])
    for answer in answers:
        if answer.status != 200:
            assert_refused(answer, INVALID_CODE)


# PKCE (RFC 7636, design §4.6) -------------------------------------------------------------
async def pkce_code(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    verifier: str = VERIFIER,
    **overrides: str | None,
) -> str:
    """A code for the public MobileApp with the S256 challenge of `verifier`."""
    params: dict[str, str | None] = {
        "client_id": "publicclient",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    url = f"{gw.url}/events/oauth2/authorize"
    return code_of(await post(client, url, authorize_params(**params)), base=MOBILE)


async def public_exchange(
    client: aiohttp.ClientSession, gw: RunningGateway, code: str, verifier: str | None
) -> Answer:
    return await exchange(
        client, gw, code, client_id="publicclient", secret=None, code_verifier=verifier
    )


async def test_lax_public_client_without_challenge_is_refused_in_the_redirect(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, client_id="publicclient")
    assert_redirect_error(answer, "invalid_request", "code_challenge is required", base=MOBILE)


async def test_pkce_s256_with_the_right_verifier(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = await pkce_code(client, gw, scope="read")
    access, _ = assert_tokens(await public_exchange(client, gw, code, VERIFIER), scope="read")
    seen = await echo(client, gw, access)
    assert seen["x-credential-identifier"] == ["publicclient"]
    assert seen["x-authenticated-userid"] == [USERID]


async def test_pkce_wrong_verifier_is_invalid_grant(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = await pkce_code(client, gw)
    answer = await public_exchange(client, gw, code, VERIFIER[:-1] + "x")
    assert_refused(answer, VERIFIER_MISMATCH)
    # The code is spent either way.
    assert_refused(await public_exchange(client, gw, code, VERIFIER), INVALID_CODE)


MALFORMED_VERIFIERS = (
    "a" * 42,
    "a" * 129,
    "a" * 42 + "/",
    "a" * 42 + "+",
    "a" * 42 + "=",
    "a" * 42 + " ",
)


async def test_pkce_malformed_verifier_is_invalid_request_even_if_it_matches(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for verifier in MALFORMED_VERIFIERS:
        code = await pkce_code(client, gw, verifier)  # the challenge IS the verifier's S256
        answer = await public_exchange(client, gw, code, verifier)
        assert (answer.status, answer.body) == (400, VERIFIER_MALFORMED), verifier


@pytest.mark.parametrize("length", [43, 128])
async def test_pkce_verifier_length_bounds_are_inclusive(
    gw: RunningGateway, client: aiohttp.ClientSession, length: int
) -> None:
    verifier = ("Az09-._~" * 20)[:length]
    code = await pkce_code(client, gw, verifier)
    assert_tokens(await public_exchange(client, gw, code, verifier))


async def test_pkce_missing_verifier_is_invalid_request(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = await pkce_code(client, gw)
    assert_refused(await public_exchange(client, gw, code, None), VERIFIER_REQUIRED)
    # A confidential client that chose PKCE is held to it as well.
    code = code_of(await authorize(client, gw, code_challenge=s256(VERIFIER)))
    assert_refused(await exchange(client, gw, code), VERIFIER_REQUIRED)


async def test_pkce_plain_method_is_refused_in_the_redirect(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for method in ("plain", "PLAIN", "S512", ""):
        answer = await authorize(
            client,
            gw,
            client_id="publicclient",
            code_challenge=s256(VERIFIER),
            code_challenge_method=method,
        )
        assert_redirect_error(
            answer, "invalid_request", "code_challenge_method must be S256", base=MOBILE
        )


async def test_pkce_method_defaults_to_s256_and_lowercase_is_accepted(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for method in (None, "s256"):
        code = await pkce_code(client, gw, code_challenge_method=method)
        assert_tokens(await public_exchange(client, gw, code, VERIFIER))


BAD_CHALLENGES = (
    s256(VERIFIER)[:42],
    s256(VERIFIER) + "A",
    s256(VERIFIER) + "=",
    s256(VERIFIER)[:42] + "+",
    s256(VERIFIER)[:42] + "/",
    VERIFIER,
    "",
)


async def test_pkce_challenge_must_be_43_base64url_characters(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for challenge in BAD_CHALLENGES:
        answer = await authorize(client, gw, client_id="publicclient", code_challenge=challenge)
        assert_redirect_error(
            answer,
            "invalid_request",
            "code_challenge must be 43 base64url characters",
            base=MOBILE,
        )


async def test_pkce_method_without_challenge_is_invalid_request(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    answer = await authorize(client, gw, code_challenge_method="S256")
    assert_redirect_error(answer, "invalid_request", "code_challenge_method without code_challenge")


async def test_pkce_downgrade_verifier_for_a_code_without_challenge_is_invalid_grant(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    code = code_of(await authorize(client, gw))  # confidential client, lax: no challenge needed
    assert_refused(await exchange(client, gw, code, code_verifier=VERIFIER), DOWNGRADE)


async def test_pkce_strict_requires_a_challenge_from_confidential_clients(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, pkce="strict")
    answer = await authorize(client, gw)
    assert_redirect_error(answer, "invalid_request", "code_challenge is required")
    code = code_of(await authorize(client, gw, code_challenge=s256(VERIFIER)))
    assert_tokens(await exchange(client, gw, code, code_verifier=VERIFIER))


async def test_pkce_none_lets_a_public_client_go_without(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, pkce="none")
    code = code_of(await authorize(client, gw, client_id="publicclient"), base=MOBILE)
    access, _ = assert_tokens(await public_exchange(client, gw, code, None))
    assert (await echo(client, gw, access))["x-credential-identifier"] == ["publicclient"]
    # A challenge sent anyway is still honoured.
    code = await pkce_code(client, gw)
    assert_refused(await public_exchange(client, gw, code, None), VERIFIER_REQUIRED)
