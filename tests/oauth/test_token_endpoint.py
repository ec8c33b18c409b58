"""The token endpoint over real HTTPS: bodies, client authentication, grants and errors.

Design §4 (bodies, HTTPS rule, no-store headers), §4.1 (client authentication, grants,
success body), §4.5 (error codes, statuses, fixed texts) and §4.6 (order of checks).
Every answer is checked for status, exact JSON body and the headers every OAuth endpoint
response carries.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from edgeauth.config import Address
from edgeauth.server import Gateway
from edgeauth.supervisor import bind
from tests.conftest import Backend, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import (
    KONG_SECRET,
    PROVISION_KEY,
    SECRET,
    OAuthWorld,
    consumers,
    events_service,
)

TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
USERID = "user-4711"
WRONG_KEY = "pk-wrong-" + "z" * 30
WRONG_SECRET = "not-the-secret-9f3a"
STATE = "xyz-state-42"
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Invalid client authentication",
}
INVALID_PROVISION_KEY = {
    "error": "invalid_provision_key",
    "error_description": "Invalid provision_key",
}
MISSING_USERID = {
    "error": "invalid_authenticated_userid",
    "error_description": "Missing authenticated_userid parameter",
}
UNSUPPORTED_GRANT = {
    "error": "unsupported_grant_type",
    "error_description": "Invalid grant_type",
}
NOT_SECRET = frozenset({"grant_type", "state"})  # fixed texts may name a grant type
MUST_USE_HTTPS = {"error": "access_denied", "error_description": "You must use HTTPS"}
AUTHORIZE = {
    "provision_key": PROVISION_KEY,
    "authenticated_userid": USERID,
    "client_id": "clientid",
    "response_type": "code",
}


# helpers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    body: dict[str, Any]
    sent: tuple[str, ...]  # parameter values sent; an error body must echo none of them


async def call(
    client: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "POST",
    form: Mapping[str, str] | None = None,
    json: Mapping[str, object] | None = None,
    data: bytes | aiohttp.FormData | None = None,
    headers: Mapping[str, str] | CIMultiDict[str] | None = None,
    sent: Iterable[str] = (),
) -> Answer:
    """One request; asserts the headers every OAuth endpoint answer carries (design §4)."""
    values = list(sent)
    body: bytes | aiohttp.FormData | None = data
    send_headers: CIMultiDict[str] = CIMultiDict(headers or {})
    if form is not None:
        body = urlencode(form).encode()
        send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        values += [v for k, v in form.items() if k not in NOT_SECRET]
    if json is not None:
        body = orjson.dumps(json)
        send_headers.setdefault("Content-Type", "application/json")
        values += [str(v) for k, v in json.items() if k not in NOT_SECRET]
    async with client.request(method, url, data=body, headers=send_headers) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"] == "application/json", raw
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        parsed = orjson.loads(raw)
        assert isinstance(parsed, dict)
        return Answer(resp.status, resp.headers, raw, parsed, tuple(values))


def assert_error(
    answer: Answer,
    status: int,
    expected: Mapping[str, str],
    *,
    state: str | None = None,
    challenge: str | None = None,
) -> None:
    """Exact error body (design §4.5), no input echoed, the challenge only when due."""
    body = {**expected, **({"state": state} if state is not None else {})}
    assert (answer.status, answer.body) == (status, body), answer.raw
    assert answer.headers.get("WWW-Authenticate") == challenge
    echoed = [v for v in answer.sent if len(v) >= 5 and v != state and v in answer.raw.decode()]
    assert echoed == [], f"error body echoes input: {echoed}"


def assert_tokens(answer: Answer, *, members: set[str], scope: str | None = None) -> None:
    """A success body with exactly `members` (design §4.1)."""
    assert answer.status == 200, answer.raw
    assert set(answer.body) == members, answer.body
    assert answer.body["token_type"] == "bearer"
    assert TOKEN_SHAPE.fullmatch(answer.body["access_token"])
    if "refresh_token" in members:
        assert TOKEN_SHAPE.fullmatch(answer.body["refresh_token"])
        assert answer.body["refresh_token"] != answer.body["access_token"]
    if "expires_in" in members:
        assert answer.body["expires_in"] == 7200
    if scope is not None:
        assert answer.body["scope"] == scope


FULL = {"access_token", "token_type", "expires_in", "refresh_token"}
ACCESS_ONLY = {"access_token", "token_type", "expires_in"}


def password(**extra: str) -> dict[str, str]:
    return {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        **extra,
    }


def basic(client_id: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def without(params: Mapping[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in names}


async def upstream_headers(
    client: aiohttp.ClientSession, world: OAuthWorld, access_token: str
) -> dict[str, str]:
    """What the backend saw of a proxied call made with `access_token`."""
    bearer = {"Authorization": f"Bearer {access_token}"}
    async with client.get(f"{world.api_url}/echo", headers=bearer) as resp:
        assert resp.status == 200
        echo = await resp.json()
    return {str(k).lower(): str(v) for k, v in echo["headers"]}


async def start_world(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **oauth2: Any
) -> OAuthWorld:
    gw = await gateway([events_service(backend, **oauth2)], consumers=consumers(tmp_path))
    return OAuthWorld(gw, backend)


# bodies ----------------------------------------------------------------------------------
async def test_password_grant_form_body(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(client, world.token_url, form=password())
    assert_tokens(answer, members=FULL)


async def test_password_grant_json_body_with_numeric_userid(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params: dict[str, object] = {**password(), "authenticated_userid": 1}
    answer = await call(client, world.token_url, json=params)
    assert_tokens(answer, members=FULL)
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-authenticated-userid"] == "1"


async def test_password_grant_multipart_body(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in password().items():
        form.add_field(name, value)
    answer = await call(client, world.token_url, data=form)
    assert_tokens(answer, members=FULL)
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-authenticated-userid"] == USERID


@pytest.mark.parametrize(
    ("content_type", "body", "description"),
    [
        pytest.param(
            "text/plain",
            urlencode(password()).encode(),
            "Unsupported Content-Type",
            id="unsupported-content-type",
        ),
        pytest.param(
            "application/json",
            b'{"grant_type": "password", "client_id": ',
            "The request body is not valid JSON",
            id="malformed-json",
        ),
        pytest.param(
            "application/json",
            orjson.dumps([password()]),
            "The request body must be a JSON object",
            id="json-array",
        ),
        pytest.param(
            "application/json",
            orjson.dumps({**password(), "authenticated_userid": {"id": USERID}}),
            "JSON parameters must be strings",
            id="json-object-value",
        ),
    ],
)
async def test_unreadable_bodies_are_invalid_request(
    world: OAuthWorld,
    client: aiohttp.ClientSession,
    content_type: str,
    body: bytes,
    description: str,
) -> None:
    answer = await call(
        client,
        world.token_url,
        data=body,
        headers={"Content-Type": content_type},
        sent=[SECRET, PROVISION_KEY, USERID],
    )
    assert_error(answer, 400, {"error": "invalid_request", "error_description": description})


def _multipart(pairs: list[tuple[str, str]]) -> tuple[bytes, str]:
    boundary = "edgeauth-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in pairs
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), boundary


def _repeated_bodies() -> list[Any]:
    pairs = [*password().items(), ("scope", "read"), ("scope", "write")]
    form = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()
    multipart, boundary = _multipart(pairs)
    json_members = ", ".join(
        f"{orjson.dumps(k).decode()}: {orjson.dumps(v).decode()}" for k, v in pairs
    )
    return [
        pytest.param("application/x-www-form-urlencoded", form, id="form"),
        pytest.param(f"multipart/form-data; boundary={boundary}", multipart, id="multipart"),
        pytest.param("application/json", f"{{{json_members}}}".encode(), id="json-duplicate-key"),
    ]


@pytest.mark.parametrize(("content_type", "body"), _repeated_bodies())
async def test_repeated_parameter_is_invalid_request(
    world: OAuthWorld, client: aiohttp.ClientSession, content_type: str, body: bytes
) -> None:
    answer = await call(
        client,
        world.token_url,
        data=body,
        headers={"Content-Type": content_type},
        sent=[SECRET, PROVISION_KEY, USERID],
    )
    assert_error(
        answer,
        400,
        {"error": "invalid_request", "error_description": "A parameter was sent more than once"},
    )


async def test_body_over_16_kib_is_413(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(
        client, world.token_url, form=password(padding="p" * (16 * 1024)), sent=[SECRET]
    )
    assert_error(
        answer,
        413,
        {"error": "invalid_request", "error_description": "The request body is too large"},
    )


async def test_chunked_body_over_16_kib_is_413(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield urlencode(password()).encode() + b"&padding="
        for _ in range(5):
            yield b"p" * 4096

    async with client.post(
        world.token_url,
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        assert resp.status == 413
        assert await resp.json() == {
            "error": "invalid_request",
            "error_description": "The request body is too large",
        }


async def test_body_of_exactly_16_kib_is_accepted(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    head = urlencode(password()).encode() + b"&padding="
    body = head + b"p" * (16 * 1024 - len(head))
    assert len(body) == 16 * 1024
    answer = await call(
        client,
        world.token_url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_tokens(answer, members=FULL)


@pytest.mark.parametrize("name", ["client_secret", "client_id", "provision_key", "refresh_token"])
async def test_credentials_in_query_string_are_refused(
    world: OAuthWorld, client: aiohttp.ClientSession, name: str
) -> None:
    answer = await call(client, f"{world.token_url}?{name}=x", form=password())
    assert_error(
        answer,
        400,
        {
            "error": "invalid_request",
            "error_description": "Credentials must be sent in the request body",
        },
    )


# client authentication -------------------------------------------------------------------
async def test_basic_with_form_encoded_secret(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    encoded = quote_plus(SECRET)
    assert encoded == SECRET.replace("%", "%25").replace(":", "%3A")
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("clientid", encoded),
    )
    assert_tokens(answer, members=FULL)


async def test_basic_with_raw_secret(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("clientid", SECRET),
    )
    assert_tokens(answer, members=FULL)


async def test_basic_with_matching_body_client_id(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_secret"),
        headers=basic("clientid", quote_plus(SECRET)),
    )
    assert_tokens(answer, members=FULL)


async def test_basic_and_body_secret_is_invalid_request(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client, world.token_url, form=password(), headers=basic("clientid", quote_plus(SECRET))
    )
    assert_error(
        answer,
        400,
        {
            "error": "invalid_request",
            "error_description": "Only one client authentication method may be used",
        },
    )


async def test_basic_and_other_body_client_id_is_invalid_request(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        form={**without(password(), "client_secret"), "client_id": "otherclient"},
        headers=basic("clientid", quote_plus(SECRET)),
    )
    assert_error(
        answer,
        400,
        {
            "error": "invalid_request",
            "error_description": "Only one client authentication method may be used",
        },
    )


async def test_unknown_client_via_basic_is_401_with_challenge(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("nosuchclient", WRONG_SECRET),
        sent=["nosuchclient", WRONG_SECRET],
    )
    assert_error(answer, 401, INVALID_CLIENT, challenge='Basic realm="edgeauth"')


async def test_unknown_client_via_body_is_400_without_challenge(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        form=password(client_id="nosuchclient", client_secret=WRONG_SECRET),
    )
    assert_error(answer, 400, INVALID_CLIENT)


async def test_wrong_secret_via_basic(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("clientid", WRONG_SECRET),
        sent=[WRONG_SECRET],
    )
    assert_error(answer, 401, INVALID_CLIENT, challenge='Basic realm="edgeauth"')


async def test_wrong_secret_via_body(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(client, world.token_url, form=password(client_secret=WRONG_SECRET))
    assert_error(answer, 400, INVALID_CLIENT)


async def test_secret_of_another_client_is_refused(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=password(client_secret="other-secret"))
    assert_error(answer, 400, INVALID_CLIENT)


async def test_confidential_client_without_secret(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=without(password(), "client_secret"))
    assert_error(answer, 400, INVALID_CLIENT)


async def test_confidential_client_with_empty_secret(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=password(client_secret=""))
    assert_error(answer, 400, INVALID_CLIENT)


async def test_no_client_at_all(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(
        client, world.token_url, form=without(password(), "client_id", "client_secret")
    )
    assert_error(answer, 400, INVALID_CLIENT)


async def test_public_client_sending_a_secret_via_body(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client, world.token_url, form=password(client_id="publicclient", client_secret=WRONG_SECRET)
    )
    assert_error(answer, 400, INVALID_CLIENT)


async def test_public_client_sending_a_secret_via_basic(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("publicclient", WRONG_SECRET),
        sent=[WRONG_SECRET],
    )
    assert_error(answer, 401, INVALID_CLIENT, challenge='Basic realm="edgeauth"')


async def test_kong_hashed_credential_authenticates(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    in_body = await call(
        client, world.token_url, form=password(client_id="kongclient", client_secret=KONG_SECRET)
    )
    assert_tokens(in_body, members=FULL)
    seen = await upstream_headers(client, world, in_body.body["access_token"])
    assert seen["x-credential-identifier"] == "kongclient"
    via_basic = await call(
        client,
        world.token_url,
        form=without(password(), "client_id", "client_secret"),
        headers=basic("kongclient", KONG_SECRET),
    )
    assert_tokens(via_basic, members=FULL)
    wrong = await call(
        client, world.token_url, form=password(client_id="kongclient", client_secret="tofux")
    )
    assert_error(wrong, 400, INVALID_CLIENT)


# order of checks (design §4.6) -----------------------------------------------------------
async def test_missing_grant_type_with_bad_client_is_invalid_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = without(password(client_secret=WRONG_SECRET), "grant_type")
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, INVALID_CLIENT)


async def test_bad_client_wins_over_bad_provision_key(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = password(client_id="nosuchclient", provision_key=WRONG_KEY)
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, INVALID_CLIENT)


async def test_unknown_grant_type_with_good_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=password(grant_type="urn:x:magic"))
    assert_error(answer, 400, UNSUPPORTED_GRANT)


async def test_missing_grant_type_with_good_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=without(password(), "grant_type"))
    assert_error(
        answer,
        400,
        {"error": "invalid_request", "error_description": "Missing grant_type parameter"},
    )


async def test_grant_not_enabled_by_default_is_unsupported(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = {**password(grant_type="authorization_code"), "code": "c" * 43}
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, UNSUPPORTED_GRANT)


async def test_disabled_client_credentials_is_unsupported(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    world = await start_world(gateway, backend, tmp_path, enable_client_credentials=False)
    params = {"client_id": "clientid", "client_secret": SECRET, "grant_type": "client_credentials"}
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, UNSUPPORTED_GRANT)
    # the password grant of the same service still works
    assert_tokens(await call(client, world.token_url, form=password()), members=FULL)


async def test_provision_key_checked_before_scope(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = password(provision_key=WRONG_KEY, scope="admin-zzz")
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, INVALID_PROVISION_KEY)


async def test_body_parse_checked_before_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        data=b"{not json",
        headers={"Content-Type": "application/json", **basic("nosuchclient", WRONG_SECRET)},
    )
    assert_error(
        answer,
        400,
        {"error": "invalid_request", "error_description": "The request body is not valid JSON"},
    )


# password grant --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        pytest.param(without(password(), "provision_key"), id="missing"),
        pytest.param(password(provision_key=WRONG_KEY), id="wrong"),
        pytest.param(password(provision_key=""), id="empty"),
        pytest.param(password(provision_key=PROVISION_KEY + "x"), id="longer"),
    ],
)
async def test_password_grant_provision_key(
    world: OAuthWorld, client: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, INVALID_PROVISION_KEY)
    assert PROVISION_KEY not in answer.raw.decode()


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(without(password(), "authenticated_userid"), id="missing"),
        pytest.param(password(authenticated_userid=""), id="empty"),
        pytest.param(password(authenticated_userid=" "), id="space"),
        pytest.param(password(authenticated_userid="\t \n"), id="whitespace"),
        pytest.param(password(authenticated_userid="\u00a0"), id="no-break-space"),
    ],
)
async def test_password_grant_authenticated_userid(
    world: OAuthWorld, client: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    answer = await call(client, world.token_url, form=params)
    assert_error(answer, 400, MISSING_USERID)


@pytest.mark.parametrize("scope", ["admin-zzz", "read admin-zzz", "READ"])
async def test_password_grant_unknown_scope(
    world: OAuthWorld, client: aiohttp.ClientSession, scope: str
) -> None:
    answer = await call(client, world.token_url, form=password(scope=scope))
    assert_error(
        answer,
        400,
        {
            "error": "invalid_scope",
            "error_description": "The requested scope is invalid or unknown",
        },
    )


async def test_password_grant_scope_echoed(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=password(scope="read write"))
    assert_tokens(answer, members=FULL | {"scope"}, scope="read write")
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-authenticated-scope"] == "read write"


async def test_password_grant_without_scope_has_no_scope_member(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=password(scope=""))
    assert_tokens(answer, members=FULL)


async def test_mandatory_scope(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    world = await start_world(gateway, backend, tmp_path, mandatory_scope=True)
    must = {"error": "invalid_scope", "error_description": "You must specify a scope"}
    assert_error(await call(client, world.token_url, form=password()), 400, must)
    assert_error(await call(client, world.token_url, form=password(scope="")), 400, must)
    assert_error(await call(client, world.token_url, json=password(scope="")), 400, must)
    granted = await call(client, world.token_url, form=password(scope="read"))
    assert_tokens(granted, members=FULL | {"scope"}, scope="read")


async def test_state_echoed_on_success(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(client, world.token_url, json=password(state=STATE, scope="read"))
    assert_tokens(answer, members=FULL | {"scope", "state"}, scope="read")
    assert answer.body["state"] == STATE


@pytest.mark.parametrize(
    ("params", "status", "expected", "challenge"),
    [
        pytest.param(password(provision_key=WRONG_KEY), 400, INVALID_PROVISION_KEY, None, id="pk"),
        pytest.param(password(client_secret=WRONG_SECRET), 400, INVALID_CLIENT, None, id="client"),
        pytest.param(password(grant_type="nope"), 400, UNSUPPORTED_GRANT, None, id="grant"),
    ],
)
async def test_state_echoed_on_errors(
    world: OAuthWorld,
    client: aiohttp.ClientSession,
    params: dict[str, str],
    status: int,
    expected: dict[str, str],
    challenge: str | None,
) -> None:
    answer = await call(client, world.token_url, form={**params, "state": STATE})
    assert_error(answer, status, expected, state=STATE, challenge=challenge)


async def test_state_echoed_on_basic_invalid_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        world.token_url,
        json={**without(password(), "client_id", "client_secret"), "state": STATE},
        headers=basic("clientid", WRONG_SECRET),
        sent=[WRONG_SECRET],
    )
    assert_error(answer, 401, INVALID_CLIENT, state=STATE, challenge='Basic realm="edgeauth"')


async def test_public_client_may_use_password_grant(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = without(password(client_id="publicclient"), "client_secret")
    answer = await call(client, world.token_url, form=params)
    assert_tokens(answer, members=FULL)
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-credential-identifier"] == "publicclient"
    assert seen["x-authenticated-userid"] == USERID


# client_credentials ----------------------------------------------------------------------
def client_credentials(**extra: str) -> dict[str, str]:
    return {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        **extra,
    }


async def test_client_credentials_has_no_refresh_token(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    answer = await call(client, world.token_url, form=client_credentials(scope="read"))
    assert_tokens(answer, members=ACCESS_ONLY | {"scope"}, scope="read")
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-credential-identifier"] == "clientid"
    assert "x-authenticated-userid" not in seen


async def test_client_credentials_refused_to_public_client(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = without(client_credentials(client_id="publicclient"), "client_secret")
    answer = await call(client, world.token_url, form=params)
    assert_error(
        answer,
        400,
        {
            "error": "unauthorized_client",
            "error_description": "client_credentials is only for confidential clients",
        },
    )


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"authenticated_userid": USERID}, id="no-provision-key"),
        pytest.param({"authenticated_userid": USERID, "provision_key": WRONG_KEY}, id="wrong"),
    ],
)
async def test_client_credentials_userid_needs_provision_key(
    world: OAuthWorld, client: aiohttp.ClientSession, extra: dict[str, str]
) -> None:
    answer = await call(client, world.token_url, form=client_credentials(**extra))
    assert_error(answer, 400, INVALID_PROVISION_KEY)


async def test_client_credentials_userid_reaches_backend(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    params = client_credentials(authenticated_userid=USERID, provision_key=PROVISION_KEY)
    answer = await call(client, world.token_url, form=params)
    assert_tokens(answer, members=ACCESS_ONLY)
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-authenticated-userid"] == USERID
    assert seen["x-credential-identifier"] == "clientid"


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize("with_key", [True, False], ids=["provision-key", "no-provision-key"])
async def test_client_credentials_blank_userid_names_nobody(
    world: OAuthWorld, client: aiohttp.ClientSession, blank: str, with_key: bool
) -> None:
    """A blank user id is no user id, whitespace or not: a client token without a user."""
    key = {"provision_key": PROVISION_KEY} if with_key else {}
    params = client_credentials(authenticated_userid=blank, **key)
    answer = await call(client, world.token_url, form=params)
    assert_tokens(answer, members=ACCESS_ONLY)
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert "x-authenticated-userid" not in seen
    assert seen["x-credential-identifier"] == "clientid"


# token_expiration = 0 --------------------------------------------------------------------
async def test_non_expiring_tokens_have_no_expires_in_nor_refresh(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    world = await start_world(gateway, backend, tmp_path, token_expiration=0)
    answer = await call(client, world.token_url, form=password())
    assert_tokens(answer, members={"access_token", "token_type"})
    seen = await upstream_headers(client, world, answer.body["access_token"])
    assert seen["x-authenticated-userid"] == USERID
    cc = await call(client, world.token_url, form=client_credentials())
    assert_tokens(cc, members={"access_token", "token_type"})
    refresh = await call(
        client,
        world.token_url,
        form={**client_credentials(), "grant_type": "refresh_token", "refresh_token": "r" * 43},
    )
    assert_error(refresh, 400, UNSUPPORTED_GRANT)


# method and path -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(
    world: OAuthWorld, client: aiohttp.ClientSession, method: str
) -> None:
    data = urlencode(password()).encode() if method in {"PUT", "PATCH"} else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else None
    answer = await call(client, world.token_url, method=method, data=data, headers=headers)
    assert_error(
        answer,
        405,
        {
            "error": "invalid_method",
            "error_description": "The HTTP method is not allowed for this endpoint",
        },
    )
    assert answer.headers["Allow"] == "POST"


async def test_trailing_slash(world: OAuthWorld, client: aiohttp.ClientSession) -> None:
    answer = await call(client, world.token_url + "/", form=password())
    assert_tokens(answer, members=FULL)


# the HTTPS rule --------------------------------------------------------------------------
@asynccontextmanager
async def plain_http(gw: RunningGateway) -> AsyncIterator[str]:
    """A second in-process Gateway on the same settings, listening on plain HTTP only."""
    sock = bind(Address("127.0.0.1", 0))
    port = sock.getsockname()[1]
    plain = Gateway(gw.settings)
    await plain.start([], [sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await plain.stop(1.0)


@pytest.fixture
async def terminated(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path
) -> AsyncIterator[str]:
    """Plain-HTTP base URL of a gateway that trusts 127.0.0.1 as a terminating proxy:
    /events refuses plain HTTP outright, /lb accepts it when the proxy says https."""
    lb = service(
        "lb",
        backend.url + "/api",
        ["/lb"],
        strip_path=False,
        oauth2={
            "scopes": ["read"],
            "provision_key": PROVISION_KEY,
            "enable_password_grant": True,
            "accept_http_if_already_terminated": True,
        },
    )
    gw = await gateway(
        [events_service(backend), lb],
        consumers=consumers(tmp_path),
        trusted_proxies=["127.0.0.1/32"],
    )
    async with plain_http(gw) as url:
        yield url


async def test_plain_http_is_refused(terminated: str, client: aiohttp.ClientSession) -> None:
    answer = await call(client, f"{terminated}/events/oauth2/token", form=password())
    assert_error(answer, 400, MUST_USE_HTTPS)


async def test_plain_http_refused_without_the_flag_even_if_proxy_says_https(
    terminated: str, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        f"{terminated}/events/oauth2/token",
        form=password(),
        headers={"X-Forwarded-Proto": "https"},
    )
    assert_error(answer, 400, MUST_USE_HTTPS)


async def test_plain_http_accepted_once_terminated(
    terminated: str, client: aiohttp.ClientSession
) -> None:
    answer = await call(
        client,
        f"{terminated}/lb/oauth2/token",
        form=password(),
        headers={"X-Forwarded-Proto": "https"},
    )
    assert_tokens(answer, members=FULL)


@pytest.mark.parametrize(
    "protos",
    [
        pytest.param([], id="none"),
        pytest.param(["http"], id="http"),
        pytest.param(["https", "https"], id="two-headers"),
        pytest.param(["https, https"], id="two-values"),
    ],
)
async def test_plain_http_needs_exactly_one_https_proto(
    terminated: str, client: aiohttp.ClientSession, protos: list[str]
) -> None:
    headers: CIMultiDict[str] = CIMultiDict([("X-Forwarded-Proto", p) for p in protos])
    answer = await call(client, f"{terminated}/lb/oauth2/token", form=password(), headers=headers)
    assert_error(answer, 400, MUST_USE_HTTPS)


@pytest.fixture
async def behind_proxy(backend: Backend, gateway: GatewayFactory, tmp_path: Path) -> OAuthWorld:
    """A TLS gateway whose peer (127.0.0.1) is a trusted proxy."""
    gw = await gateway(
        [events_service(backend, enable_authorization_code=True)],
        consumers=consumers(tmp_path),
        trusted_proxies=["127.0.0.1/32"],
    )
    return OAuthWorld(gw, backend)


@pytest.mark.parametrize(
    "protos",
    [
        pytest.param(["http"], id="http"),
        pytest.param(["HTTP "], id="http-spelling"),
        pytest.param(["https, http"], id="in-a-list"),
        pytest.param(["https", "http"], id="second-header"),
    ],
)
@pytest.mark.parametrize("endpoint", ["token", "authorize", "revoke", "introspect"])
async def test_trusted_proxy_saying_http_is_refused_even_over_tls(
    behind_proxy: OAuthWorld, client: aiohttp.ClientSession, protos: list[str], endpoint: str
) -> None:
    """The client's first hop was plain HTTP: its credentials already crossed the network in
    clear, so the request is refused like a plain-HTTP one (Kong does the same)."""
    headers: CIMultiDict[str] = CIMultiDict([("X-Forwarded-Proto", p) for p in protos])
    form = password() if endpoint != "authorize" else AUTHORIZE
    url = f"{behind_proxy.gw.url}/events/oauth2/{endpoint}"
    answer = await call(client, url, form=form, headers=headers)
    assert_error(answer, 400, MUST_USE_HTTPS)


async def test_trusted_proxy_saying_https_over_tls_is_served(
    behind_proxy: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    for headers in ({"X-Forwarded-Proto": "https"}, {}):
        answer = await call(client, behind_proxy.token_url, form=password(), headers=headers)
        assert_tokens(answer, members=FULL)
    authorize_url = f"{behind_proxy.gw.url}/events/oauth2/authorize"
    answer = await call(
        client, authorize_url, form=AUTHORIZE, headers={"X-Forwarded-Proto": "https"}
    )
    assert answer.status == 200, answer.raw


async def test_untrusted_peer_saying_http_is_not_believed(
    world: OAuthWorld, client: aiohttp.ClientSession
) -> None:
    """X-Forwarded-Proto from anyone but a trusted proxy is just a client's word."""
    answer = await call(
        client, world.token_url, form=password(), headers={"X-Forwarded-Proto": "http"}
    )
    assert_tokens(answer, members=FULL)


async def test_method_checked_before_https_and_https_before_body(
    terminated: str, client: aiohttp.ClientSession
) -> None:
    url = f"{terminated}/events/oauth2/token"
    wrong_method = await call(client, url, method="GET")
    assert_error(
        wrong_method,
        405,
        {
            "error": "invalid_method",
            "error_description": "The HTTP method is not allowed for this endpoint",
        },
    )
    assert wrong_method.headers["Allow"] == "POST"
    bad_body = await call(
        client, url, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(bad_body, 400, MUST_USE_HTTPS)


async def test_untrusted_proxy_cannot_claim_https(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    # no trusted_proxies: 127.0.0.1 is just a client, whatever it says
    world = await start_world(gateway, backend, tmp_path, accept_http_if_already_terminated=True)
    async with plain_http(world.gw) as url:
        answer = await call(
            client,
            f"{url}/events/oauth2/token",
            form=password(),
            # no idle keep-alive connection left for the plain gateway's stop() to wait on
            headers={"X-Forwarded-Proto": "https", "Connection": "close"},
        )
    assert_error(answer, 400, MUST_USE_HTTPS)
