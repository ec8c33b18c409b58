"""Kong's `anonymous` consumer: the identity a request without a valid token goes through as.

Rule 1: the consumer is read once per worker (one read in flight per name, however many
requests wait) and cached until the revocation feed carries its marker (it was renamed,
changed or deleted) or the feed itself is lost.
Rule 2: a name that names nobody answers None (the gateway refuses with 401) and is
remembered as missing for MISSING_SECONDS, so an unauthenticated flood cannot turn into one
store read and one error line per request; a consumer created under that name counts within
that time.
Rule 3: a store failure is `temporarily_unavailable` (503), as for tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from edgeauth import crypto
from edgeauth.cache import Header
from edgeauth.errors import StoreError, TemporarilyUnavailable
from edgeauth.proxy import headers
from edgeauth.store.base import Store

log = logging.getLogger(__name__)

MISSING_SECONDS = 1.0
Identity = tuple[Header, ...]


class AnonymousConsumers:
    """The anonymous identities one worker serves, by configured name (an id or a username)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, Identity] = {}
        self._missing: dict[str, float] = {}  # name -> monotonic time it may be read again
        self._markers: set[bytes] = set()
        self._reads: dict[str, asyncio.Task[Identity | None]] = {}
        self._generation = 0
        self.caching = True

    async def identity(self, name: str) -> Identity | None:
        """The identity for `name`, None while no consumer has that id or username."""
        known = self._known.get(name)
        if known is not None:
            return known
        until = self._missing.get(name)
        if until is not None and until > time.monotonic():
            return None
        pending = self._reads.get(name)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._read(name))
            self._reads[name] = pending
            pending.add_done_callback(lambda task: self._done(name, task))
        return await asyncio.shield(pending)

    def heard(self, digests: Sequence[bytes]) -> None:
        """Revoked or changed digests: a marker among them drops every cached identity."""
        self._generation += 1
        if self._markers and not self._markers.isdisjoint(digests):
            self.forget()

    def forget(self) -> None:
        self._generation += 1
        self._known.clear()
        self._missing.clear()
        self._markers.clear()

    def _done(self, name: str, task: asyncio.Task[Identity | None]) -> None:
        self._reads.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting to see it

    async def _read(self, name: str) -> Identity | None:
        generation = self._generation
        try:
            consumer = await self._store.get_consumer(name)
        except StoreError as exc:
            raise TemporarilyUnavailable() from exc
        fresh = self.caching and generation == self._generation  # else it may have changed
        if consumer is None:
            log.error("anonymous consumer %r does not exist; refusing", name)
            if fresh:
                self._missing[name] = time.monotonic() + MISSING_SECONDS
            return None
        identity = headers.identity(
            consumer.id, consumer.custom_id, consumer.username, anonymous=True
        )
        if fresh:
            self._known[name] = identity
            self._markers.add(crypto.consumer_marker(consumer.id))
        return identity
