"""One token request, start to finish (design §4.1, order of checks §4.6).

Order: client authentication → grant_type known and enabled → the grant's own rules →
scope; so a missing grant_type from a bad client is `invalid_client`. Secrets are verified
off the event loop (PBKDF2 is slow on purpose) and successes remembered in a SecretMemo;
failures are throttled per client_id and source address (see throttle.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from edgeauth import crypto
from edgeauth.errors import (
    ClientChanged,
    ClientThrottled,
    InvalidClient,
    InvalidRequest,
    UnsupportedGrantType,
)
from edgeauth.models import Credential
from edgeauth.oauth import issuer
from edgeauth.oauth.client_auth import (
    ClientCredentials,
    SecretCheck,
    secret_check,
)
from edgeauth.oauth.grants import build_grants
from edgeauth.oauth.grants.base import Grant, GrantContext
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy
from edgeauth.oauth.throttle import Key, Throttle, keys_of
from edgeauth.store.base import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClientAuthenticator:
    """Client authentication for the token, revocation and introspection endpoints of one
    service. `pbkdf2_runs` counts verifications started, dummy ones included: the work an
    attacker can make this worker do."""

    store: Store
    memo: crypto.SecretMemo
    throttle: Throttle
    pbkdf2_runs: int = 0

    async def authenticate(self, creds: ClientCredentials, source: str) -> Credential:
        """The client, if it proved who it is; InvalidClient or ClientThrottled otherwise."""
        keys = keys_of(creds.client_id, source)
        self._admit(keys)
        try:
            found = secret_check(creds, await self.store.find_credential(creds.client_id))
        except InvalidClient:
            self._failed(keys)
            raise
        if isinstance(found, Credential):
            return found  # a public client, rightly without a secret
        if found.client is not None and self._remembered(creds, found.encoded):
            return found.client
        return await self._verify(creds, found, keys)

    def _remembered(self, creds: ClientCredentials, encoded: str) -> bool:
        return any(self.memo.key(creds.client_id, s, encoded) in self.memo for s in creds.secrets)

    async def _verify(
        self, creds: ClientCredentials, found: SecretCheck, keys: tuple[Key, Key]
    ) -> Credential:
        """PBKDF2, counted as a failure before it runs (checked and counted with no await in
        between, so that concurrent guesses are throttled too) and given back on success."""
        self._admit(keys)
        self._failed(keys)
        for secret in creds.secrets:
            self.pbkdf2_runs += 1
            matched = await asyncio.to_thread(crypto.verify_secret, secret, found.encoded)
            if matched and found.client is not None:
                self.memo.add(self.memo.key(creds.client_id, secret, found.encoded))
                self.throttle.forgive(keys)
                return found.client
        raise InvalidClient(basic=creds.basic)

    def _admit(self, keys: tuple[Key, Key]) -> None:
        wait = self.throttle.retry_after(keys, time.monotonic())
        if wait is not None:
            raise ClientThrottled(wait)

    def _failed(self, keys: tuple[Key, Key]) -> None:
        for kind, value in self.throttle.failed(keys, time.monotonic()):
            log.warning(
                "client authentication throttled: %s %r failed %d times in %gs",
                kind,
                value,
                self.throttle.limit,
                self.throttle.window,
            )


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """The token endpoint of one protected service."""

    policy: Policy
    auth: ClientAuthenticator
    grants: dict[str, Grant]

    @classmethod
    def build(cls, policy: Policy, auth: ClientAuthenticator) -> TokenEndpoint:
        return cls(policy, auth, build_grants(policy))

    async def issue(
        self, params: Params, creds: ClientCredentials, source: str, now: float
    ) -> dict[str, Any]:
        """The success body for the client claiming `creds`; raises an OAuthError for every
        refusal."""
        client = await self.auth.authenticate(creds, source)
        grant_type = params.get("grant_type")
        if not grant_type:
            raise InvalidRequest("Missing grant_type parameter")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType()
        ctx = GrantContext(self.policy, self.auth.store, now)
        try:
            minted = await grant(params, client, ctx)
        except ClientChanged as exc:
            # The secret, type or owner changed (or the client went away) after this request
            # was authenticated: the token was not kept, and the request is refused as it
            # would be a moment later.
            raise InvalidClient(basic=creds.basic) from exc
        return issuer.response_body(minted, now, params.get("state"))
