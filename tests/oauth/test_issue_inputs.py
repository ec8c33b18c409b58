"""What the OAuth endpoints accept as text, over real HTTPS.

A user id becomes the backend's `X-Authenticated-Userid`, sent as its UTF-8 bytes: control
characters (C0, DEL, C1) are refused at issue time by every grant that takes one. Malformed
text (a lone surrogate, bytes that are not UTF-8) or a NUL in any parameter of any endpoint,
in any body format, is `invalid_request` and never reaches the store (which could not take it
and answered 503, tripping store alerts).
"""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson
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
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service
from tests.proxy.raw_upstream import RawUpstream
from tests.store.conftest import pg_schema

CONTROL_IN_USERID = {
    "error": "invalid_request",
    "error_description": "The authenticated_userid must not contain control characters",
}
MALFORMED = {
    "error": "invalid_request",
    "error_description": "A parameter holds a NUL or malformed text",
}
# C0 (NUL, ESC, TAB inside a value, CR LF), DEL and C1 (NEL, CSI).
CONTROL_USERIDS = [
    "a\x00b",
    "\x1b[31mred",
    "tab\tin",
    "a\r\nX-Admin: 1",
    "del\x7f",
    "nel\x85",
    "\x9b",
]
JSON = {"Content-Type": "application/json"}
LONE = "\\ud800"  # a JSON escape for a lone surrogate, as it travels in the body


@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    svc = events_service(backend, enable_authorization_code=True, enable_implicit_grant=True)
    return await gateway([svc], consumers=consumers(tmp_path))


def url(gw: RunningGateway, endpoint: str) -> str:
    return f"{gw.url}/events/oauth2/{endpoint}"


async def post(
    client: aiohttp.ClientSession, target: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with client.post(target, **kwargs) as resp:
        body = orjson.loads(await resp.read())
        assert isinstance(body, dict)
        return resp.status, body


def refusal(userid: str) -> tuple[int, dict[str, str]]:
    """A NUL is refused in every parameter (no store keeps it), other controls in user ids."""
    return 400, MALFORMED if "\x00" in userid else CONTROL_IN_USERID


def issue_params(grant: str, userid: str) -> tuple[str, dict[str, str]]:
    """(endpoint, parameters) asking `grant` for a token or code for `userid`."""
    if grant in ("code", "token"):
        return "authorize", {
            "client_id": "clientid",
            "provision_key": PROVISION_KEY,
            "authenticated_userid": userid,
            "response_type": grant,
        }
    return "token", {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": grant,
        "provision_key": PROVISION_KEY,
        "authenticated_userid": userid,
    }


# user ids -------------------------------------------------------------------------------------
@pytest.mark.parametrize("grant", ["password", "client_credentials", "code", "token"])
async def test_a_user_id_with_a_control_character_gets_nothing(
    gw: RunningGateway, client: aiohttp.ClientSession, grant: str
) -> None:
    for userid in CONTROL_USERIDS:
        endpoint, params = issue_params(grant, userid)
        answer = await post(client, url(gw, endpoint), data=params)
        assert answer == refusal(userid), repr(userid)
        answer = await post(client, url(gw, endpoint), json=params)  # JSON escapes them
        assert answer == refusal(userid), repr(userid)
    endpoint, params = issue_params(grant, "user-1")
    status, body = await post(client, url(gw, endpoint), data=params)
    assert status == 200, body


async def test_the_backend_gets_a_user_id_as_its_utf8_bytes(
    gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Identity headers go upstream as the UTF-8 bytes of the value, unescaped; what would be
    a control byte there is never issued."""
    policy = {"provision_key": PROVISION_KEY, "enable_password_grant": True}
    async with RawUpstream() as upstream:
        svc = service("events", upstream.url, ["/events"], strip_path=False, oauth2=policy)
        gw = await gateway([svc], consumers=consumers(tmp_path))
        for userid in ("müller", "用户 7", "Ω-ß"):
            _, params = issue_params("password", userid)
            status, body = await post(client, url(gw, "token"), data=params)
            assert status == 200, body
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            async with client.get(f"{gw.url}/events/x", headers=headers) as resp:
                assert resp.status == 200
            sent = b"".join(bytes(seen.data) for seen in upstream.connections)
            assert b"\r\nX-Authenticated-Userid: " + userid.encode() + b"\r\n" in sent
        for userid in CONTROL_USERIDS:
            _, params = issue_params("password", userid)
            assert await post(client, url(gw, "token"), data=params) == refusal(userid)


# malformed text -------------------------------------------------------------------------------
def json_bodies(endpoint: str) -> list[bytes]:
    """The endpoint's own parameters as JSON, each variant with a lone surrogate somewhere."""
    if endpoint == "authorize":
        fields = {"provision_key": PROVISION_KEY, "response_type": "code"}
        other = "authenticated_userid"
    elif endpoint == "token":
        fields = {"client_secret": SECRET, "grant_type": "password", "provision_key": PROVISION_KEY}
        other = "authenticated_userid"
    else:
        fields = {"client_secret": SECRET, "token": "x" * 43}
        other = "token"
    good = {"client_id": "clientid", "authenticated_userid": "1", **fields}
    variants = [
        {**good, "client_id": LONE},
        {**good, other: LONE},
        {**good, "state": LONE},
        {**good, "scope": "read" + LONE},
        {**good, LONE: "x"},  # a name
    ]
    return [
        ("{" + ",".join(f'"{k}":"{v}"' for k, v in body.items()) + "}").encode()
        for body in variants
    ]


def form_and_multipart() -> list[tuple[bytes, str]]:
    """A client_id whose bytes are an encoded surrogate (ED A0 80), in each other format."""
    part = b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
    multipart = part % (b"client_id", b"\xed\xa0\x80") + part % (b"token", b"x") + b"--b--\r\n"
    return [
        (b"client_id=%ED%A0%80&token=x", "application/x-www-form-urlencoded"),
        (b"client_id=\xff&token=x", "application/x-www-form-urlencoded"),
        (multipart, "multipart/form-data; boundary=b"),
    ]


@pytest.mark.parametrize("endpoint", ["token", "authorize", "revoke", "introspect"])
async def test_malformed_text_anywhere_is_invalid_request(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
) -> None:
    caplog.set_level(logging.WARNING)
    for body in json_bodies(endpoint):
        status, answer = await post(client, url(gw, endpoint), data=body, headers=JSON)
        assert (status, answer["error"]) == (400, "invalid_request"), body
        assert "state" not in answer  # never echoed back
    for body, content_type in form_and_multipart():
        headers = {"Content-Type": content_type}
        status, answer = await post(client, url(gw, endpoint), data=body, headers=headers)
        assert (status, answer["error"]) == (400, "invalid_request"), body
    # A multipart boundary that is not ASCII.
    body = b'--\xff\r\nContent-Disposition: form-data; name="client_id"\r\n\r\nx\r\n--\xff--\r\n'
    request = (
        (
            f"POST /events/oauth2/{endpoint} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        + b"Content-Type: multipart/form-data; boundary=\xff\r\n\r\n"
        + body
    )
    response = await raw_exchange(gw.port, client_ssl, request)
    assert (status_of(response), body_of(response)["error"]) == (400, "invalid_request")
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_basic_credentials_that_are_not_utf8_name_no_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """`%ED%A0%80` once form-decoded is not UTF-8: it was read as three U+FFFD, the client_id
    of a real application here, and authenticated as it."""
    replaced = "\ufffd\ufffd\ufffd"
    app = {"name": "Replacement", "client_id": replaced, "client_secret": "pw"}
    admin = f"{gw.admin_url}/consumers/Other/oauth2"
    async with client.post(admin, json=app, headers=gw.admin_headers) as created:
        assert created.status == 201, await created.text()
    grant = {"grant_type": "client_credentials"}
    for raw in (b"%ED%A0%80:pw", b"%FF%FE%FD:pw", b"\xff:pw"):
        basic = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        async with client.post(url(gw, "token"), data=grant, headers=basic) as resp:
            assert resp.status == 401, raw
            assert (await resp.json())["error"] == "invalid_client"
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="edgeauth"'
    basic = {"Authorization": "Basic " + base64.b64encode(f"{replaced}:pw".encode()).decode()}
    async with client.post(url(gw, "token"), data=grant, headers=basic) as resp:
        assert resp.status == 200  # the application itself, named as it is


async def test_a_nul_never_reaches_the_store(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """PostgreSQL cannot keep a NUL: a client_id holding one made the lookup fail, answered
    as an unreachable store (503) at every endpoint."""
    async with pg_schema() as schema:
        store = {"backend": "postgres", "dsn": schema.dsn}
        svc = events_service(backend, enable_authorization_code=True)
        gw = await gateway([svc], consumers=consumers(tmp_path), tables={"store": store})
        for endpoint in ("token", "authorize", "revoke", "introspect"):
            _, params = issue_params("code" if endpoint == "authorize" else "password", "1")
            params.update(client_id="a\x00b", token="x")
            assert await post(client, url(gw, endpoint), data=params) == (400, MALFORMED)
        basic = {"Authorization": "Basic " + base64.b64encode(b"a\x00b:x").decode()}
        for endpoint in ("token", "revoke", "introspect"):
            status, body = await post(client, url(gw, endpoint), data={"token": "x"}, headers=basic)
            assert (status, body["error"]) == (401, "invalid_client"), endpoint
        _, params = issue_params("password", "1")
        status, body = await post(client, url(gw, "token"), data=params)
        assert status == 200, body  # the store was fine all along
