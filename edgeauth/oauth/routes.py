"""Thin aiohttp handlers for the OAuth endpoints under a protected route (design §4).

Order of checks (design §4.6): method → HTTPS rule → body size and parse → the endpoint.
Every answer, success or error, is JSON with `Cache-Control: no-store` and `Pragma: no-cache`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from edgeauth.errors import (
    AccessDenied,
    InvalidMethod,
    InvalidRequest,
    OAuthError,
    RequestTooLarge,
    StoreError,
    TemporarilyUnavailable,
    oauth_body,
)
from edgeauth.oauth.params import MAX_BODY_BYTES, parse_body, refuse_secrets_in_query
from edgeauth.oauth.policy import Policy
from edgeauth.oauth.token_endpoint import TokenEndpoint
from edgeauth.proxy.headers import Peer

ENDPOINTS = frozenset({"token", "authorize", "revoke", "introspect"})
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def endpoint_of(path: str) -> str | None:
    """`token` for `.../oauth2/token` (trailing slash allowed), else None."""
    trimmed = path[:-1] if path.endswith("/") else path
    _, sep, tail = trimmed.rpartition("/oauth2/")
    return tail if sep and tail in ENDPOINTS else None


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def check_https(request: web.BaseRequest, peer: Peer, policy: Policy) -> None:
    """Plain HTTP only behind a trusted proxy that says, once, that it terminated TLS."""
    if peer.scheme == "https":
        return
    protos = request.headers.getall("X-Forwarded-Proto", [])
    if (
        policy.settings.accept_http_if_already_terminated
        and peer.trusted
        and len(protos) == 1
        and protos[0].strip().lower() == "https"
    ):
        return
    raise AccessDenied()


async def read_capped(request: web.BaseRequest, cap: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refusing anything over `cap` bytes without buffering it."""
    length = request.content_length
    if length is not None and length > cap:
        raise RequestTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise RequestTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def handle(
    request: web.BaseRequest, name: str, policy: Policy, endpoint: TokenEndpoint, peer: Peer
) -> web.Response:
    """Answer one OAuth endpoint request; never forwarded upstream."""
    state: str | None = None
    try:
        if request.method != "POST":
            raise InvalidMethod()
        check_https(request, peer, policy)
        params = parse_body(request.headers.get("Content-Type", ""), await read_capped(request))
        state = params.get("state")
        refuse_secrets_in_query(request.raw_path.partition("?")[2])
        if name != "token":
            raise InvalidRequest("This OAuth endpoint is not enabled")
        try:
            body = await endpoint.issue(params, request.headers.get("Authorization"), time.time())
        except StoreError as exc:
            raise TemporarilyUnavailable() from exc
        return json_response(200, body)
    except OAuthError as exc:
        resp = json_response(exc.status, oauth_body(exc, state), exc.headers(policy.settings.realm))
        if not request.content.is_eof():
            resp.force_close()
        return resp
