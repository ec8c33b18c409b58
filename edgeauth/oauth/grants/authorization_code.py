"""Authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).

A code is single use, consumed atomically by the store; it is bound to the client, the
service that issued it (even under global_credentials) and the redirect_uri given at
authorize time. A code presented again revokes the tokens issued from it (RFC 6749 §4.1.2):
their family id is derived from the code's digest, so a replay needs no extra record.
"""

from __future__ import annotations

import logging

from edgeauth import crypto
from edgeauth.errors import InvalidGrant, InvalidRequest
from edgeauth.models import AuthCode, Credential
from edgeauth.oauth import pkce, scopes
from edgeauth.oauth.grants.base import GrantContext
from edgeauth.oauth.issuer import Issue, Minted, mint
from edgeauth.oauth.params import Params

log = logging.getLogger(__name__)


def family_of(code_digest: bytes) -> str:
    """The family id of the tokens a code yields."""
    return "code-" + code_digest.hex()


def judge(code: AuthCode, params: Params, client: Credential, ctx: GrantContext) -> None:
    """Pure: may this client redeem this (already consumed) code here, now?"""
    if code.credential_id != client.id or code.service != ctx.policy.service:
        raise InvalidGrant("Invalid code")
    if code.redirect_uri is not None and params.get("redirect_uri") != code.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    pkce.check_verifier(params.get("code_verifier"), code.code_challenge)


async def exchange(params: Params, client: Credential, ctx: GrantContext) -> Minted:
    raw = params.get("code")
    if not raw:
        raise InvalidRequest("Missing code parameter")
    digest = crypto.digest(raw)
    code = await ctx.store.take_code(digest, ctx.now)
    if code is None:
        revoked = await ctx.store.revoke_family(family_of(digest), ctx.now)
        if revoked:
            log.warning("authorization code replayed: %d tokens revoked", revoked)
        raise InvalidGrant("Invalid code")
    judge(code, params, client, ctx)
    granted = scopes.parse(code.scope)
    issue = Issue(client, code.authenticated_userid, granted, True, family_of(digest))
    minted = mint(issue, ctx.policy, ctx.now)
    await ctx.store.save_token(minted.record, client)
    return minted
