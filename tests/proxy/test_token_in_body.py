"""`accept_token_in_body` (RFC 6750 §2.2) over real HTTPS: the token as the `access_token`
parameter of a form body, what the backend then receives, and the bounds on reading it.

The sample backend's /echo reports the body's length and digest and the headers it got;
the recording upstream (raw_upstream.py) shows the forwarded request byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from tests.conftest import Backend, GatewayFactory, RunningGateway, raw_exchange, service
from tests.oauth.conftest import PROVISION_KEY, consumers, events_service
from tests.protocol.test_protocol import _open, _response
from tests.proxy.raw_upstream import RawUpstream
from tests.proxy.test_auth import (
    BARE_CHALLENGE,
    INVALID,
    INVALID_CHALLENGE,
    MISSING,
    _bearer,
    _seen,
    _token,
)

FORM = "application/x-www-form-urlencoded"
CAP = 16 * 1024
TWO_PLACES = {
    "error": "invalid_request",
    "error_description": "The access token was sent in more than one place",
}
TWICE = {"error": "invalid_request", "error_description": "More than one access_token was sent"}
TOO_LARGE = {"message": "Request size limit exceeded"}


async def _start(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **oauth2: Any
) -> RunningGateway:
    return await gateway(
        [events_service(backend, accept_token_in_body=True, **oauth2)],
        consumers=consumers(tmp_path),
    )


async def _start_raw(
    gateway: GatewayFactory, up: RawUpstream, tmp_path: Path, **server: Any
) -> RunningGateway:
    """The events service in front of the recording upstream."""
    policy = {
        "scopes": ["read", "write"],
        "provision_key": PROVISION_KEY,
        "enable_password_grant": True,
        "accept_token_in_body": True,
    }
    events = service("events", up.url + "/api", ["/events"], strip_path=False, oauth2=policy)
    return await gateway([events], consumers=consumers(tmp_path), **server)


async def _send(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """Status, JSON body and headers of the answer to one request with a form body."""
    async with client.request(
        method, url, data=body, headers={"Content-Type": FORM, **(headers or {})}
    ) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


def _received(echo: dict[str, Any], body: bytes) -> None:
    """The backend got exactly `body`, framed by a Content-Length of its own length."""
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    seen = _seen(echo)
    assert seen["content-length"] == [str(len(body))]
    assert "transfer-encoding" not in seen


def _head(method: str, body_framing: str, *lines: str) -> bytes:
    extra = "".join(f"{line}\r\n" for line in lines)
    return (
        f"{method} /events/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
        f"{body_framing}\r\n{extra}\r\n"
    ).encode()


# --- the token found, and what the backend then receives ---------------------------------------


async def test_form_token_is_accepted_and_only_its_pair_leaves_the_body(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    cases = [
        (f"a=1&access_token={token}&b=x%20y+z", "a=1&b=x%20y+z"),
        (f"access_token={token}&b=2", "b=2"),
        (f"a=1&access_token={token}", "a=1"),
        (f"a=&&access%5Ftoken={token}&c", "a=&&c"),  # the name is decoded, the rest kept as is
        (f"access_token={token}", ""),
    ]
    for method in ("POST", "PUT", "PATCH"):
        for sent, kept in cases:
            status, echo, _ = await _send(
                client, f"{gw.url}/events/echo", sent.encode(), method=method
            )
            assert status == 200, (method, sent, echo)
            assert echo["method"] == method
            _received(echo, kept.encode())
            assert _seen(echo)["x-consumer-username"] == ["ClientApp"]
            assert token not in orjson.dumps(echo).decode()
    # A media type parameter, and any case, is still a form.
    status, echo, _ = await _send(
        client,
        f"{gw.url}/events/echo",
        f"access_token={token}&x=1".encode(),
        headers={"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8"},
    )
    assert status == 200
    _received(echo, b"x=1")


async def test_form_body_is_forwarded_unchanged_without_hide_credentials(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, hide_credentials=False)
    token = await _token(client, gw)
    sent = f"a=1&access_token={token}&b=%41".encode()
    status, echo, _ = await _send(client, f"{gw.url}/events/echo", sent)
    assert status == 200, echo
    _received(echo, sent)
    assert _seen(echo)["x-credential-identifier"] == ["clientid"]


async def test_chunked_form_body_goes_upstream_whole_with_a_computed_length(
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    async with RawUpstream() as up:
        gw = await _start_raw(gateway, up, tmp_path)
        token = await _token(client, gw)
        form = f"a=1&access_token={token}&b=2".encode()
        chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (form[:7], form[7:30], form[30:]))
        request = (
            _head("POST", "Transfer-Encoding: chunked") + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"
        )
        answer = await raw_exchange(gw.port, client_ssl, request)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        [(head, body)] = up.requests()
        assert body == b"a=1&b=2"
        names = [name.lower() for name, _ in head.headers]
        assert dict(head.headers)[b"content-length"] == b"7"
        assert names.count(b"content-length") == 1
        assert b"transfer-encoding" not in names
        assert b"x-trailer" not in names
        assert token.encode() not in bytes(up.connections[0].data)


async def test_pipelined_form_requests_are_each_read_whole_and_answered_in_order(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    forms = [f"n={i}&access_token={token}".encode() for i in range(3)]
    data = b"".join(_head("POST", f"Content-Length: {len(f)}") + f for f in forms)
    reader, writer = await _open(gw.port, client_ssl)
    try:
        writer.write(data + b"GET /events/echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for i in range(3):
            status, headers, body = await _response(reader)
            assert status == 200, body
            assert "connection" not in headers
            _received(orjson.loads(body), f"n={i}".encode())
        status, _, body = await _response(reader)
        assert status == 401  # the GET behind them carries no token: still its own answer
        assert orjson.loads(body) == MISSING
    finally:
        writer.close()


# --- where the token is not looked for ------------------------------------------------------


async def test_only_form_bodies_of_post_put_patch_are_searched(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    url = f"{gw.url}/events/echo"
    form = f"access_token={token}".encode()
    for method, body, content_type in [
        ("GET", form, FORM),
        ("DELETE", form, FORM),
        ("POST", orjson.dumps({"access_token": token}), "application/json"),
        ("POST", form, "text/plain"),
        ("POST", form, "multipart/form-data; boundary=x"),
    ]:
        status, answer, headers = await _send(
            client, url, body, method=method, headers={"Content-Type": content_type}
        )
        assert (status, answer) == (401, MISSING), (method, content_type)
        assert headers["WWW-Authenticate"] == BARE_CHALLENGE
    # A JSON body that names access_token is no credential: it reaches the backend as sent.
    sent = orjson.dumps({"access_token": token})
    status, echo, _ = await _send(
        client, url, sent, headers={**_bearer(token), "Content-Type": "application/json"}
    )
    assert status == 200
    _received(echo, sent)


async def test_two_content_types_are_no_form(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    form = f"access_token={token}".encode()
    request = _head("POST", f"Content-Length: {len(form)}", "Content-Type: text/plain") + form
    answer = await raw_exchange(gw.port, client_ssl, request)
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2]) == MISSING


async def test_form_token_is_ignored_when_the_option_is_off(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    token = await _token(client, gw)
    status, answer, _ = await _send(
        client, f"{gw.url}/events/echo", f"access_token={token}".encode()
    )
    assert (status, answer) == (401, MISSING)
    # Nor is the body touched: under hide_credentials only the query and header are.
    sent = f"a=1&access_token={token}".encode()
    status, echo, _ = await _send(client, f"{gw.url}/events/echo", sent, headers=_bearer(token))
    assert status == 200
    _received(echo, sent)


# --- refusals --------------------------------------------------------------------------------


async def test_token_in_two_places_or_twice_in_the_body_is_400(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path, accept_token_in_query=True)
    token = await _token(client, gw)
    url = f"{gw.url}/events/echo"
    form = f"access_token={token}".encode()
    for target, body, headers, expected in [
        (url, form, _bearer(token), TWO_PLACES),
        (url, form, _bearer("another-token"), TWO_PLACES),
        (f"{url}?access_token={token}", form, None, TWO_PLACES),
        (url, form + b"&x=1&access_token=" + token.encode(), None, TWICE),
        (url, form + b"&access%5ftoken=", None, TWICE),
    ]:
        status, answer, resp_headers = await _send(client, target, body, headers=headers)
        assert (status, answer) == (400, expected), target
        assert "WWW-Authenticate" not in resp_headers


async def test_invalid_token_in_the_body_is_401_invalid_token(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    for _ in range(2):  # the second from the negative cache
        status, answer, headers = await _send(
            client, f"{gw.url}/events/echo", b"a=1&access_token=not-a-token-" + b"x" * 32
        )
        assert (status, answer) == (401, INVALID)
        assert headers["WWW-Authenticate"] == INVALID_CHALLENGE


async def test_form_body_over_the_cap_is_413_and_at_the_cap_is_read(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    prefix = f"access_token={token}&pad=".encode()
    at_cap = prefix + b"x" * (CAP - len(prefix))
    status, echo, _ = await _send(client, f"{gw.url}/events/echo", at_cap)
    assert status == 200
    _received(echo, at_cap[len(f"access_token={token}&") :])
    status, answer, headers = await _send(client, f"{gw.url}/events/echo", at_cap + b"x")
    assert (status, answer) == (413, TOO_LARGE)
    assert headers["Connection"] == "close"  # the body was not read


async def test_a_smaller_route_body_limit_is_the_cap(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    events = events_service(backend, accept_token_in_body=True)
    events["max_request_body_bytes"] = 100
    gw = await gateway([events], consumers=consumers(tmp_path))
    token = await _token(client, gw)
    form = f"access_token={token}&pad=".encode()
    status, _, _ = await _send(client, f"{gw.url}/events/echo", form.ljust(100, b"x"))
    assert status == 200
    status, answer, _ = await _send(client, f"{gw.url}/events/echo", form.ljust(101, b"x"))
    assert (status, answer) == (413, TOO_LARGE)


async def test_chunked_form_body_over_the_cap_is_cut_with_413_and_never_forwarded(
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    async with RawUpstream() as up:
        gw = await _start_raw(gateway, up, tmp_path)
        token = await _token(client, gw)
        piece = b"p=" + b"x" * 4094
        chunks = [f"access_token={token}".encode()] + [b"&" + piece] * 5
        body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        answer = await raw_exchange(
            gw.port, client_ssl, _head("POST", "Transfer-Encoding: chunked") + body
        )
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert orjson.loads(answer.partition(b"\r\n\r\n")[2]) == TOO_LARGE
        assert up.connections == []


# --- Expect: 100-continue and the body timers ------------------------------------------------


async def test_expect_continue_is_answered_before_a_form_body_is_read_for_its_token(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    token = await _token(client, gw)
    form = f"a=1&access_token={token}".encode()
    reader, writer = await _open(gw.port, client_ssl)
    try:
        writer.write(_head("POST", f"Content-Length: {len(form)}", "Expect: 100-continue"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(form)
        status, _, body = await _response(reader)
    finally:
        writer.close()
    assert status == 200, body
    echo = orjson.loads(body)
    _received(echo, b"a=1")
    assert "expect" not in _seen(echo)


async def test_expect_continue_is_not_answered_for_a_body_that_is_not_read(
    backend: Backend, gateway: GatewayFactory, client_ssl: ssl.SSLContext, tmp_path: Path
) -> None:
    gw = await _start(gateway, backend, tmp_path)
    expect = "Expect: 100-continue"
    for head in (
        _head("POST", f"Content-Length: {CAP + 1}", expect),  # over the cap: 413 at once
        _head("POST", "Content-Length: 50", expect, "Content-Type: x"),  # no form: 401
        b"POST /events/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50\r\nAuthorization: Bearer bogus\r\nExpect: 100-continue\r\n\r\n",
    ):
        answer = await raw_exchange(gw.port, client_ssl, head, read_timeout=5)
        assert b"100 Continue" not in answer, answer
        assert answer.startswith((b"HTTP/1.1 413 ", b"HTTP/1.1 401 ")), answer
        assert b"\r\nConnection: close\r\n" in answer


async def test_a_stalled_form_body_is_cut_by_body_timeout_and_never_forwarded(
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    async with RawUpstream() as up:
        gw = await _start_raw(
            gateway, up, tmp_path, body_timeout_seconds=0.5, request_timeout_seconds=30
        )
        token = await _token(client, gw)
        form = f"access_token={token}&rest=".encode()
        reader, writer = await _open(gw.port, client_ssl)
        try:  # only body_timeout_seconds can end this wait (request_timeout_seconds is 30)
            writer.write(_head("POST", f"Content-Length: {len(form) + 10}") + form)
            status, headers, body = await _response(reader)
        finally:
            writer.close()
        assert (status, orjson.loads(body)) == (408, {"message": "Request timeout"})
        assert headers["connection"] == "close"
        assert up.connections == []


async def test_a_trickled_form_body_is_cut_by_request_timeout(
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    async with RawUpstream() as up:
        gw = await _start_raw(
            gateway, up, tmp_path, body_timeout_seconds=5, request_timeout_seconds=1
        )
        token = await _token(client, gw)
        form = f"access_token={token}&rest=".encode() + b"x" * 100
        reader, writer = await _open(gw.port, client_ssl)

        async def trickle() -> None:  # a byte every 0.1 s: never idle for body_timeout_seconds
            writer.write(_head("POST", f"Content-Length: {len(form)}"))
            for byte in form:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        task = asyncio.ensure_future(trickle())
        try:
            status, _, body = await _response(reader)
        finally:
            task.cancel()
            writer.close()
        assert (status, orjson.loads(body)) == (408, {"message": "Request timeout"})
        assert up.connections == []
