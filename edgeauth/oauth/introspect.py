"""Token revocation (RFC 7009) and introspection (RFC 7662), beyond Kong (design §4.3).

Rule 1: the caller authenticates as at the token endpoint and may act only on its own tokens;
someone else's token is answered exactly like an unknown one (200 / `{"active": false}`), so
neither endpoint can be used to probe for valid tokens.
Rule 2: only tokens valid on the service whose endpoint is called are acted upon.
Rule 3: revoking either half of a pair revokes the whole family (both halves and every token
rotated from the same grant), and the revocation reaches every worker like any other.
Rule 4: introspection's `username` is the resource owner (`authenticated_userid`, RFC 7662
§2.2), absent for a token of the client alone; the application's owner is `consumer`, in
the admin API's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeauth import crypto
from edgeauth.errors import InvalidRequest
from edgeauth.models import Credential, TokenRecord, TokenView
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy
from edgeauth.store.base import Store


def _token_param(params: Params) -> str:
    token = params.get("token")
    if not token:
        raise InvalidRequest("Missing token parameter")
    return token


async def _own(
    store: Store, token: str, client: Credential, hint: str | None
) -> tuple[TokenRecord, TokenView | None, bool] | None:
    """(record, view if an access token, is_refresh) of the client's own token, or None."""
    digest = crypto.digest(token)
    order = ("refresh", "access") if hint == "refresh_token" else ("access", "refresh")
    for kind in order:
        if kind == "access":
            view = await store.find_token(digest)
            if view is not None and view.token.credential_id == client.id:
                return view.token, view, False
        else:
            record = await store.find_refresh(digest)
            if record is not None and record.credential_id == client.id:
                return record, None, True
    return None


def _is_active(record: TokenRecord, refresh: bool, now: float) -> bool:
    if record.revoked_at is not None:
        return False
    expires_at = record.refresh_expires_at if refresh else record.expires_at
    return expires_at is None or expires_at > now


@dataclass(frozen=True, slots=True)
class Revocation:
    """The revocation endpoint (RFC 7009) of one protected service."""

    policy: Policy
    store: Store

    async def revoke(self, params: Params, client: Credential, now: float) -> dict[str, Any]:
        found = await _own(self.store, _token_param(params), client, params.get("token_type_hint"))
        if found is not None and self.policy.accepts(found[0].service):
            await self.store.revoke_family(found[0].family_id, now)
        return {}


@dataclass(frozen=True, slots=True)
class Introspection:
    """The introspection endpoint (RFC 7662) of one protected service."""

    policy: Policy
    store: Store

    async def introspect(self, params: Params, client: Credential, now: float) -> dict[str, Any]:
        found = await _own(self.store, _token_param(params), client, params.get("token_type_hint"))
        if found is None:
            return {"active": False}
        record, view, refresh = found
        if not _is_active(record, refresh, now) or not self.policy.accepts(record.service):
            return {"active": False}
        if view is None:
            view = await self.store.find_token(record.access_digest)
        return _active(record, refresh, client, view, self.policy.service)


def _active(
    record: TokenRecord, refresh: bool, client: Credential, view: TokenView | None, service: str
) -> dict[str, Any]:
    """The answer for an active token (Rule 4); a refresh token has the scope it refreshes to."""
    expires_at = record.refresh_expires_at if refresh else record.expires_at
    scope = (record.refresh_scope or record.scope) if refresh else record.scope
    body: dict[str, Any] = {
        "active": True,
        "client_id": client.client_id,
        "token_type": "refresh_token" if refresh else "bearer",
        "iat": int(record.created_at),
        "sub": record.authenticated_userid or client.client_id,
        "aud": record.service or service,
        "consumer": {
            "id": client.consumer_id,
            "username": view.username if view is not None else None,
        },
    }
    if scope:
        body["scope"] = scope
    if record.authenticated_userid:
        body["username"] = record.authenticated_userid
    if expires_at is not None:
        body["exp"] = math.floor(expires_at)
    return body
