"""One token request, start to finish (design §4.1, order of checks §4.6).

Order: client authentication → grant_type known and enabled → the grant's own rules →
scope; so a missing grant_type from a bad client is `invalid_client`. Secrets are verified
off the event loop (PBKDF2 is slow on purpose) and successes remembered in a SecretMemo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from edgeauth import crypto
from edgeauth.errors import InvalidClient, InvalidRequest, UnsupportedGrantType
from edgeauth.models import ClientType, Credential
from edgeauth.oauth import issuer
from edgeauth.oauth.client_auth import ClientCredentials, check_secret_presence, credentials_from
from edgeauth.oauth.grants import build_grants
from edgeauth.oauth.grants.base import Grant, GrantContext
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy
from edgeauth.store.base import Store


async def authenticate(
    creds: ClientCredentials, store: Store, memo: crypto.SecretMemo
) -> Credential:
    """The client, if it proved who it is; InvalidClient otherwise."""
    client = await store.find_credential(creds.client_id)
    if client is None:
        raise InvalidClient(basic=creds.basic)
    check_secret_presence(creds, client)
    if client.client_type is ClientType.PUBLIC or client.secret_hash is None:
        return client
    for secret in creds.secrets:
        key = memo.key(client.client_id, secret, client.secret_hash)
        if key in memo:
            return client
        if await asyncio.to_thread(crypto.verify_secret, secret, client.secret_hash):
            memo.add(key)
            return client
    raise InvalidClient(basic=creds.basic)


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """The token endpoint of one protected service."""

    policy: Policy
    store: Store
    memo: crypto.SecretMemo
    grants: dict[str, Grant]

    @classmethod
    def build(cls, policy: Policy, store: Store, memo: crypto.SecretMemo) -> TokenEndpoint:
        return cls(policy, store, memo, build_grants(policy))

    async def issue(self, params: Params, authorization: str | None, now: float) -> dict[str, Any]:
        """The success body; raises an OAuthError for every refusal."""
        creds = credentials_from(authorization, params)
        client = await authenticate(creds, self.store, self.memo)
        grant_type = params.get("grant_type")
        if not grant_type:
            raise InvalidRequest("Missing grant_type parameter")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType()
        minted = await grant(params, client, GrantContext(self.policy, self.store, now))
        return issuer.response_body(
            minted.access_token, minted.refresh_token, minted.record, now, params.get("state")
        )
