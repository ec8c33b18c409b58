"""Resource owner password credentials, Kong style (RFC 6749 §4.3).

The provision key stands in for the user's password: the resource owner's backend checked
the user and sends `authenticated_userid`. Issues an access token and a refresh token.
"""

from __future__ import annotations

from edgeauth.models import Credential
from edgeauth.oauth import scopes
from edgeauth.oauth.grants.base import GrantContext
from edgeauth.oauth.grants.provisioned import authenticated_userid, check_provision_key
from edgeauth.oauth.issuer import Issue, Minted, mint
from edgeauth.oauth.params import Params


def judge(params: Params, client: Credential, ctx: GrantContext) -> Issue:
    """Pure rules: provision key, then user id, then scope (Kong's order)."""
    check_provision_key(params, ctx.policy)
    userid = authenticated_userid(params)
    s = ctx.policy.settings
    granted = scopes.grant(params.get("scope"), s.scopes, s.mandatory_scope)
    return Issue(client, userid, granted, with_refresh=True)


async def exchange(params: Params, client: Credential, ctx: GrantContext) -> Minted:
    minted = mint(judge(params, client, ctx), ctx.policy, ctx.now)
    await ctx.store.save_token(minted.record, client)
    return minted
