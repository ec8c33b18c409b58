"""Client credentials (RFC 6749 §4.4): confidential clients only, no refresh token (§4.4.3).

An `authenticated_userid` may ride along, as in Kong, but only with the provision key; a blank
one (empty or only whitespace) counts as none.
"""

from __future__ import annotations

from edgeauth.errors import UnauthorizedClient
from edgeauth.models import ClientType, Credential
from edgeauth.oauth import scopes
from edgeauth.oauth.grants.base import GrantContext
from edgeauth.oauth.grants.provisioned import check_provision_key, given_userid
from edgeauth.oauth.issuer import Issue, Minted, mint
from edgeauth.oauth.params import Params


def judge(params: Params, client: Credential, ctx: GrantContext) -> Issue:
    """Pure rules: confidential clients only, the provision key whenever a user id or a key
    is sent, then scope."""
    if client.client_type is not ClientType.CONFIDENTIAL:
        raise UnauthorizedClient("client_credentials is only for confidential clients")
    userid = given_userid(params)
    if userid is not None or "provision_key" in params:
        check_provision_key(params, ctx.policy)
    s = ctx.policy.settings
    granted = scopes.grant(params.get("scope"), s.scopes, s.mandatory_scope)
    return Issue(client, userid, granted, with_refresh=False)


async def exchange(params: Params, client: Credential, ctx: GrantContext) -> Minted:
    minted = mint(judge(params, client, ctx), ctx.policy, ctx.now)
    await ctx.store.save_token(minted.record, client)
    return minted
