"""Bearer authentication for the proxy path (design §5 steps 2-3, §8).

Rule 1: a cache hit is synchronous, with no I/O and no allocation beyond the token, its digest
and the answer: one SHA-256, one dict lookup, one comparison with now, one integer add; the
identity headers are built once per token. `authenticate` answers it without a coroutine.
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
from collections.abc import Callable, Sequence

from edgeauth import crypto
from edgeauth.anonymous import AnonymousConsumers
from edgeauth.cache import (
    CLIENT_ID,
    CONSUMER,
    EXPIRES_AT,
    IDENTITY,
    SCOPES,
    SERVICE,
    Entry,
    Header,
    TokenCache,
)
from edgeauth.config import OAuth2Settings
from edgeauth.errors import (
    BodyTooLarge,
    InsufficientScope,
    InvalidToken,
    MissingToken,
    OAuthError,
    StoreError,
    TemporarilyUnavailable,
)
from edgeauth.exchange import Exchange
from edgeauth.messages import Request, read_capped
from edgeauth.metrics import Recorder
from edgeauth.models import TokenView
from edgeauth.oauth import bearer
from edgeauth.oauth.policy import Policy
from edgeauth.proxy.headers import identity
from edgeauth.proxy.routes import form_cap
from edgeauth.routing import Target
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


def _token_outside_body(
    request: Request, s: OAuth2Settings, raw_query: str
) -> tuple[str | None, str]:
    """The token of the header or the query, and the query to forward."""
    header_token = bearer.from_header(request.headers.getall(s.auth_header_name, ()))
    if not raw_query or not (s.accept_token_in_query or s.hide_credentials):
        return header_token, raw_query  # the usual request: no query to search or strip
    found, stripped = bearer.split_query_token(raw_query)
    if s.hide_credentials:
        raw_query = stripped  # design §3: never forwarded, used or not
    return bearer.choose(header_token, found if s.accept_token_in_query else None), raw_query


async def _token_in_body(
    request: Request, s: OAuth2Settings, target: Target, token: str | None
) -> tuple[str | None, bytes | None]:
    """`accept_token_in_body`: the one token of the request, and the body to forward if it
    was read. Only a form body is read (RFC 6750 §2.2), whole and capped (form_cap: over it,
    the proxy's 413); a token found elsewhere too is still invalid_request, so it is read even
    then."""
    if not bearer.is_form(request.method, request.headers.getall("Content-Type", [])):
        return token, None
    body = await read_capped(request, form_cap(target), BodyTooLarge)
    body_token, stripped = bearer.split_form_token(body)
    return bearer.choose(token, body_token), stripped if s.hide_credentials else body


def _admit(entry: Entry | None, policy: Policy, required: tuple[str, ...], now: float) -> Entry:
    """`entry`, if it is a token live at `now`, valid on this service (design §5.3) with the
    required scopes; else the refusal raised."""
    if entry is None or entry[EXPIRES_AT] <= now:
        raise InvalidToken()
    service = entry[SERVICE]
    if service != policy.service and not policy.accepts(service):
        raise InvalidToken()
    if required and not all(scope in entry[SCOPES] for scope in required):
        raise InsufficientScope(required)
    return entry


class Validator:
    """Turns a raw bearer token into the cache entry that lets a request through."""

    def __init__(self, store: Store, cache: TokenCache) -> None:
        self.store = store
        self.cache = cache
        self._loading: dict[bytes, asyncio.Task[Entry | None]] = {}
        self._stale: set[bytes] = set()  # digests whose read in flight predates a revocation
        self._revocations = 0
        self.anonymous = AnonymousConsumers(store)
        self.heard_all = True  # see feed.py for when it is not

    def vouched(self, heard_all: bool) -> None:
        """Whether the feed vouches that every revocation is heard. The cache starts empty
        either way: while it cannot vouch, nothing is cached and every token is read from the
        store; once it can again, some revocations may have been missed meanwhile."""
        self._forget_all()
        self.heard_all = heard_all
        self.anonymous.caching = heard_all

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

    async def authenticate(
        self,
        request: Request,
        policy: Policy,
        target: Target,
        raw_query: str,
        ex: Exchange,
        metrics: Recorder,
        clock: Callable[[], float],
    ) -> tuple[tuple[Header, ...], str, bytes | None]:
        """Identity headers for upstream, the query to forward, and the body to forward when it
        had to be read to find the token (design §5 steps 2-3); the token must be live at the
        time `clock` gives once any body is in."""
        s = policy.settings
        token, raw_query = _token_outside_body(request, s, raw_query)
        body: bytes | None = None
        if s.accept_token_in_body and request.body_exists:  # else no body is ever read here
            token, body = await _token_in_body(request, s, target, token)
        required = target.route.required_scopes
        try:
            if token is None:
                raise MissingToken()
            now = clock()
            digest = crypto.digest(token)
            entry = self.cache.get(digest, now) if self.heard_all else None
            if entry is None:
                entry = await self._load(digest, now)
            entry = _admit(entry, policy, required, now)
        except (MissingToken, InvalidToken) as exc:
            if not s.anonymous or required:  # anonymous holds no scope
                metrics.validation("missing" if isinstance(exc, MissingToken) else "invalid")
                raise
            metrics.validation("anonymous")
            return await self._anonymous_identity(s.anonymous, ex), raw_query, body
        except OAuthError as exc:
            metrics.validation(exc.error)
            raise
        metrics.valid_tokens += 1
        ex.consumer = entry[CONSUMER]
        ex.client_id = entry[CLIENT_ID]
        return entry[IDENTITY], raw_query, body

    async def _anonymous_identity(self, anonymous: str, ex: Exchange) -> tuple[Header, ...]:
        """Kong's `anonymous`: the named consumer's identity, flagged as anonymous."""
        identity = await self.anonymous.identity(anonymous)
        if identity is None:
            raise InvalidToken()
        ex.consumer = anonymous
        return identity

    async def validate(
        self, token: str, policy: Policy, required: tuple[str, ...], now: float
    ) -> Entry:
        """The entry for a token live at `now` (the caller's clock, so tests can move it),
        valid on this service with the required scopes: what `authenticate` does inline."""
        digest = crypto.digest(token)
        entry = self.cache.get(digest, now) if self.heard_all else None
        if entry is None:
            entry = await self._load(digest, now)
        return _admit(entry, policy, required, now)

    async def _load(self, digest: bytes, now: float) -> Entry | None:
        """One store read per digest however many requests wait for it. The read runs as
        its own task, so a caller that goes away (its client hung up) never cancels it for
        the others."""
        if self.heard_all and self.cache.is_unknown(digest, now):
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
            if self.heard_all:
                self.cache.put_unknown(digest, now)
            return None
        entry = entry_for(view)
        if self.heard_all and generation == self._revocations:  # else it may be revoked by now
            self.cache.put(digest, entry)
        return entry
