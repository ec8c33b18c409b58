"""Minting tokens: fresh raw values for the response, digests for the store. Pure.

Rule: the raw access and refresh tokens exist only in the returned `Minted` value, which
the endpoint turns into the response body; records carry digests only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from edgeauth import crypto
from edgeauth.models import Credential, TokenRecord
from edgeauth.oauth import scopes
from edgeauth.oauth.policy import Policy, expires_in


@dataclass(frozen=True, slots=True)
class Issue:
    """What a grant decided to hand out."""

    credential: Credential
    userid: str | None
    scope: tuple[str, ...]
    with_refresh: bool
    family_id: str | None = None  # None: a new family (a fresh grant)


@dataclass(frozen=True, slots=True)
class Minted:
    access_token: str
    refresh_token: str | None
    record: TokenRecord


def mint(issue: Issue, policy: Policy, now: float) -> Minted:
    access = crypto.mint()
    refresh = crypto.mint() if issue.with_refresh and policy.issues_refresh else None
    record = TokenRecord(
        id=str(uuid.uuid4()),
        access_digest=crypto.digest(access),
        refresh_digest=crypto.digest(refresh) if refresh else None,
        prefix=crypto.prefix(access),
        credential_id=issue.credential.id,
        service=policy.token_service,
        authenticated_userid=issue.userid,
        scope=scopes.join(issue.scope),
        family_id=issue.family_id or str(uuid.uuid4()),
        created_at=now,
        expires_at=policy.access_expiry(now),
        refresh_expires_at=policy.refresh_expiry(now) if refresh else None,
    )
    return Minted(access, refresh, record)


def response_body(minted: Minted, now: float, state: str | None) -> dict[str, Any]:
    """Design §4.1 success body: optional members omitted rather than null. The token
    endpoint answers it as JSON, the implicit grant in the redirect URI's fragment."""
    body: dict[str, Any] = {"access_token": minted.access_token, "token_type": "bearer"}
    seconds = expires_in(minted.record.expires_at, now)
    if seconds is not None:
        body["expires_in"] = seconds
    if minted.refresh_token is not None:
        body["refresh_token"] = minted.refresh_token
    if minted.record.scope:
        body["scope"] = minted.record.scope
    if state is not None:
        body["state"] = state
    return body
