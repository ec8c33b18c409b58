"""Minting tokens: fresh raw values for the response, digests for the store. Pure.

Rule: the raw access and refresh tokens exist only in the returned `Minted` value, which
the endpoint turns into the response body; records carry digests only.
Rule: a token's id and a new family's id are time-ordered UUIDs (RFC 9562 version 7), so that
the store's indexes on them grow at one end, as its created_at ones do: an insert then costs
the same on an empty store and on one holding millions of tokens, where random ids would
touch a random page of a large index each.
"""

from __future__ import annotations

import os
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


_MS_LIMIT = (1 << 48) - 1
# The variant nibble (binary 10xx) a random hex digit stands for: its two low bits.
_VARIANT = {f"{n:x}": f"{8 + n % 4:x}" for n in range(16)}


def time_ordered_id(now: float) -> str:
    """A version 7 UUID: the milliseconds of `now` (clamped to 48 bits), then 74 random
    bits; ids made later sort later (within a millisecond, at random)."""
    ms = f"{min(max(int(now * 1000), 0), _MS_LIMIT):012x}"
    r = os.urandom(10).hex()
    return f"{ms[:8]}-{ms[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"


def mint(issue: Issue, policy: Policy, now: float) -> Minted:
    access = crypto.mint()
    refresh = crypto.mint() if issue.with_refresh and policy.issues_refresh else None
    record = TokenRecord(
        id=time_ordered_id(now),
        access_digest=crypto.digest(access),
        refresh_digest=crypto.digest(refresh) if refresh else None,
        prefix=crypto.prefix(access),
        credential_id=issue.credential.id,
        service=policy.token_service,
        authenticated_userid=issue.userid,
        scope=scopes.join(issue.scope),
        family_id=issue.family_id or time_ordered_id(now),
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
