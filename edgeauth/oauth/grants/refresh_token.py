"""Refresh (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).

With `reuse_refresh_token = false` every refresh retires the old pair and hands out a new
one, atomically: of concurrent refreshes exactly one wins, the others get `invalid_grant`.
Presenting a refresh token that was already rotated away revokes its whole family.
With `reuse_refresh_token = true` (Kong's option) the refresh token stays and only the access
token is replaced; its scope cannot change then.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from edgeauth import crypto
from edgeauth.errors import InvalidGrant, InvalidRequest, InvalidScope
from edgeauth.models import Credential, TokenRecord
from edgeauth.oauth import scopes
from edgeauth.oauth.grants.base import GrantContext
from edgeauth.oauth.issuer import Issue, Minted, mint
from edgeauth.oauth.params import Params

log = logging.getLogger(__name__)


def judge(record: TokenRecord | None, client: Credential, ctx: GrantContext) -> TokenRecord:
    """Pure: is this stored row a refresh token this client may use here, now?"""
    if record is None or record.credential_id != client.id:
        raise InvalidGrant("Invalid refresh_token")
    if not ctx.policy.accepts(record.service):
        raise InvalidGrant("Invalid refresh_token")
    if record.refresh_expires_at is not None and record.refresh_expires_at <= ctx.now:
        raise InvalidGrant("The refresh_token has expired")
    return record


async def exchange(params: Params, client: Credential, ctx: GrantContext) -> Minted:
    raw = params.get("refresh_token")
    if not raw:
        raise InvalidRequest("Missing refresh_token parameter")
    digest = crypto.digest(raw)
    record = judge(await ctx.store.find_refresh(digest), client, ctx)
    if record.revoked_at is not None:
        if record.refresh_used_at is not None:
            revoked = await ctx.store.revoke_family(record.family_id, ctx.now)
            log.warning(
                "refresh token reuse: family %s revoked (%d live)", record.family_id, revoked
            )
        raise InvalidGrant("Invalid refresh_token")
    original = record.scope if record.refresh_scope is None else record.refresh_scope
    granted = scopes.narrow(params.get("scope"), scopes.parse(original))
    if ctx.policy.settings.reuse_refresh_token:
        if "scope" in params and scopes.join(granted) != record.scope:
            # The access token is replaced in place and keeps its scope: refuse a change
            # rather than hand out something else than was asked.
            raise InvalidScope("The scope cannot change when refresh tokens are reused")
        return await _replace_access(raw, digest, ctx)
    issue = Issue(client, record.authenticated_userid, granted, True, record.family_id)
    minted = keep_refresh_scope(mint(issue, ctx.policy, ctx.now), original)
    if await ctx.store.rotate_refresh(digest, minted.record, ctx.now) is None:
        raise InvalidGrant("Invalid refresh_token")  # a concurrent refresh won the race
    return minted


def keep_refresh_scope(minted: Minted, original: str) -> Minted:
    """RFC 6749 §6: the new refresh token keeps the scope of the original grant; only the
    access token narrows."""
    if minted.record.scope == original:
        return minted
    return replace(minted, record=replace(minted.record, refresh_scope=original))


async def _replace_access(raw: str, digest: bytes, ctx: GrantContext) -> Minted:
    """Kong's `reuse_refresh_token`: same row, same refresh token and scope, new access token."""
    access = crypto.mint()
    expires_at = ctx.policy.access_expiry(ctx.now)
    updated = await ctx.store.replace_access(
        digest, crypto.digest(access), crypto.prefix(access), expires_at, ctx.now
    )
    if updated is None:
        raise InvalidGrant("Invalid refresh_token")
    return Minted(access, raw, updated)
