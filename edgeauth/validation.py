"""Bearer validation for the proxy path (design §5 step 3, §8).

Rule 1: a cache hit is synchronous: one SHA-256, one dict lookup, one comparison with now.
Rule 2: a miss reads the store once per digest however many requests wait for it
(single-flight); unknown or dead tokens are remembered briefly (negative cache).
Rule 3: a store failure is `temporarily_unavailable` (503): never a guess either way.
Rule 4: a read in flight when a revocation of its token is heard is repeated, so a request
that arrives after the revocation (and joins that read) is never let through by an answer
read before it.
Rule 5: what the revocation feed carries reaches the anonymous identities too (anonymous.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

from edgeauth import crypto
from edgeauth.anonymous import AnonymousConsumers
from edgeauth.cache import EXPIRES_AT, SCOPES, SERVICE, Entry, TokenCache
from edgeauth.errors import InsufficientScope, InvalidToken, StoreError, TemporarilyUnavailable
from edgeauth.models import TokenView
from edgeauth.oauth.policy import Policy
from edgeauth.proxy.headers import identity
from edgeauth.store.base import Store


def entry_for(view: TokenView) -> Entry:
    """The cache entry of a token; its identity headers (design §5 step 4) built here once."""
    token = view.token
    return (
        math.inf if token.expires_at is None else token.expires_at,
        token.service,
        tuple(token.scope.split()),
        identity(
            view.consumer_id,
            view.custom_id,
            view.username,
            client_id=view.client_id,
            scope=token.scope,
            userid=token.authenticated_userid,
        ),
        view.username or view.consumer_id,
        view.client_id,
    )


def is_live(view: TokenView | None, now: float) -> bool:
    if view is None or view.token.revoked_at is not None:
        return False
    expires_at = view.token.expires_at
    return expires_at is None or expires_at > now


class Validator:
    """Turns a raw bearer token into the cache entry that lets a request through."""

    def __init__(self, store: Store, cache: TokenCache) -> None:
        self.store = store
        self.cache = cache
        self._loading: dict[bytes, asyncio.Task[Entry | None]] = {}
        self._stale: set[bytes] = set()  # digests whose read in flight predates a revocation
        self._revocations = 0
        self.anonymous = AnonymousConsumers(store)
        self.trusted = True
        store.on_revoked(self.revoked)

    def distrust(self) -> None:
        """Revocations may go unheard: drop the cache and read every token from the store."""
        self.trusted = False
        self.anonymous.caching = False
        self._forget_all()

    def trust(self) -> None:
        """Revocations are heard again; start from an empty cache (some may have been missed)."""
        self._forget_all()
        self.trusted = True
        self.anonymous.caching = True

    def _forget_all(self) -> None:
        self._revocations += 1
        self.cache.clear()
        self._stale.update(self._loading)
        self.anonymous.forget()

    def revoked(self, digests: Sequence[bytes]) -> None:
        """Evict revoked (or changed) tokens; a store read of one of them already in flight
        is repeated before its answer is given, and no read in flight caches its answer."""
        self._revocations += 1
        self.cache.evict(digests)
        self.anonymous.heard(digests)
        loading = self._loading
        if loading:
            if len(digests) < len(loading):
                self._stale.update(d for d in digests if d in loading)
            else:
                dead = set(digests)
                self._stale.update(d for d in loading if d in dead)

    async def validate(self, token: str, policy: Policy, required: tuple[str, ...]) -> Entry:
        """The entry for a live token valid on this service with the required scopes."""
        digest = crypto.digest(token)
        now = time.time()
        entry = self.cache.get(digest, now) if self.trusted else None
        if entry is None:
            entry = await self._load(digest, now)
        if entry is None or not policy.accepts(entry[SERVICE]) or entry[EXPIRES_AT] <= now:
            raise InvalidToken()
        if required and not all(scope in entry[SCOPES] for scope in required):
            raise InsufficientScope(required)
        return entry

    async def _load(self, digest: bytes, now: float) -> Entry | None:
        """One store read per digest however many requests wait for it. The read runs as
        its own task, so a caller that goes away (its client hung up) never cancels it for
        the others."""
        if self.trusted and self.cache.is_unknown(digest, now):
            return None
        pending = self._loading.get(digest)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._read(digest, now))
            self._loading[digest] = pending
            pending.add_done_callback(lambda task: self._loaded(digest, task))
        return await asyncio.shield(pending)

    def _loaded(self, digest: bytes, task: asyncio.Task[Entry | None]) -> None:
        self._loading.pop(digest, None)
        self._stale.discard(digest)
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting to see it

    async def _read(self, digest: bytes, now: float) -> Entry | None:
        while True:
            generation = self._revocations
            self._stale.discard(digest)
            try:
                view = await self.store.find_token(digest)
            except StoreError as exc:
                raise TemporarilyUnavailable() from exc
            if digest not in self._stale:
                break
        if view is None or not is_live(view, now):
            if self.trusted:
                self.cache.put_unknown(digest, now)
            return None
        entry = entry_for(view)
        if self.trusted and generation == self._revocations:  # else it may be revoked by now
            self.cache.put(digest, entry)
        return entry
