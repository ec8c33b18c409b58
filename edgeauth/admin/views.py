"""Entities → Kong-shaped JSON (design §6). Pure.

Rule: a client secret appears in clear only in the response that created it; a token's full
value only in the response of the POST/PUT that created or imported it. Lists show a prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

from edgeauth.models import Consumer, Credential, TokenView
from edgeauth.store.base import Page

T = TypeVar("T")
Json = dict[str, Any]


def consumer(c: Consumer) -> Json:
    return {
        "id": c.id,
        "username": c.username,
        "custom_id": c.custom_id,
        "tags": list(c.tags) or None,
        "created_at": c.created_at,
        "type": 0,
    }


def credential(c: Credential, secret: str | None = None) -> Json:
    body: Json = {
        "id": c.id,
        "name": c.name,
        "client_id": c.client_id,
        "hash_secret": True,
        "redirect_uris": list(c.redirect_uris),
        "client_type": c.client_type.value,
        "consumer": {"id": c.consumer_id},
        "tags": list(c.tags) or None,
        "created_at": c.created_at,
    }
    if secret is not None:
        body["client_secret"] = secret
    return body


def token(
    view: TokenView, now: float, access_token: str | None = None, refresh_token: str | None = None
) -> Json:
    t = view.token
    expires_in = None if t.expires_at is None else max(0, math.ceil(t.expires_at - t.created_at))
    body: Json = {
        "id": t.id,
        "access_token_prefix": t.prefix,
        "token_type": "bearer",
        "credential": {"id": t.credential_id, "client_id": view.client_id},
        "consumer": {"id": view.consumer_id, "username": view.username},
        "service": None if t.service is None else {"id": t.service, "name": t.service},
        "authenticated_userid": t.authenticated_userid,
        "scope": t.scope or None,
        "created_at": int(t.created_at),
        "expires_in": expires_in,
        "expires_at": None if t.expires_at is None else int(t.expires_at),
        "revoked": t.revoked_at is not None,
        "active": t.revoked_at is None and (t.expires_at is None or t.expires_at > now),
        "has_refresh_token": t.refresh_digest is not None,
    }
    if access_token is not None:
        body["access_token"] = access_token
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


def page(
    result: Page[T],
    render: Callable[[T], Json],
    path: str,
    size: int,
    query: Mapping[str, str],
) -> Json:
    """`{data, offset, next}`; `next` repeats the caller's filters and is null at the end."""
    body: Json = {"data": [render(item) for item in result.items], "next": None}
    if result.next is not None:
        params = {k: v for k, v in query.items() if k not in ("offset", "size")}
        params.update(offset=result.next, size=str(size))
        body["offset"] = result.next
        body["next"] = f"{path}?{urlencode(params)}"
    return body
