"""Expiry is judged when the request's body is in, not when its head arrived: a client that
uploads slowly must not stretch the life of the token or refresh token it sends.

The gateway's clock is moved on (tests/conftest.py Clock) between `100 Continue` (the gateway is
reading the body) and the body itself.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.conftest import Backend, Clock, GatewayFactory
from tests.oauth.conftest import SECRET, consumers, events_service
from tests.protocol.test_protocol import _open, _response
from tests.proxy.test_auth import _issue

FORM = "application/x-www-form-urlencoded"
DAY = 86400.0


async def _post_late(
    port: int, client_ssl: ssl.SSLContext, path: str, form: bytes, clock: Clock, later: float
) -> tuple[int, Any]:
    """POST `form` to `path`; the gateway's clock moves on by `later` once it asks for it."""
    reader, writer = await _open(port, client_ssl)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(form)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        clock.advance(later)
        writer.write(form)
        status, _, body = await _response(reader)
    finally:
        writer.close()
    return status, orjson.loads(body)


async def test_an_access_token_sent_in_a_slow_body_is_judged_when_the_body_is_in(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    clock: Clock,
    tmp_path: Path,
) -> None:
    gw = await gateway(
        [events_service(backend, accept_token_in_body=True)], consumers=consumers(tmp_path)
    )
    issued = await _issue(client, gw)
    form = f"access_token={issued['access_token']}".encode()
    status, body = await _post_late(gw.port, client_ssl, "/events/echo", form, clock, DAY)
    assert (status, body["error"]) == (401, "invalid_token"), body


async def test_a_refresh_token_sent_in_a_slow_body_is_judged_when_the_body_is_in(
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    clock: Clock,
    tmp_path: Path,
) -> None:
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    issued = await _issue(client, gw)
    form = (
        f"grant_type=refresh_token&refresh_token={issued['refresh_token']}"
        f"&client_id=clientid&client_secret={SECRET}"
    ).encode()
    fortnight_and_a_day = 15 * DAY  # refresh_token_ttl defaults to 14 days
    status, body = await _post_late(
        gw.port, client_ssl, "/events/oauth2/token", form, clock, fortnight_and_a_day
    )
    assert (status, body["error"]) == (400, "invalid_grant"), body
