"""One revocation feed: every path by which a worker hears of revocations, and the one rule
for the time it cannot hear them (design §7, §8).

The paths, all ending in one call, `sink.revoked(digests)`:
- the store's callbacks: what this process revokes;
- the host's bus (bus.py): what another worker revoked, pushed at once (≈1 ms);
- the revocation log (revocations.py), polled: what any process revoked, never missed;
- on PostgreSQL, the NOTIFY listener (store/postgres_listen.py): what another node revoked.

The fail-closed rule, the only one: a path that can miss revocations says so (the log while it
cannot be read; the listener from start until connected, and whenever its connection is lost).
While any path says so, the feed cannot vouch for the sink's cache (`sink.vouched(False)`): it
drops its cache and reads every token from the store (so requests get 503 while the store is
down) instead of trusting entries that may have been revoked. When the last such path is back
the feed vouches again (`sink.vouched(True)`) and the sink starts from an empty cache, since
anything may have been missed meanwhile. The store's callbacks and the bus
never vouch for anything: the bus is an accelerator ahead of the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from edgeauth.bus import WorkerBus
from edgeauth.config import StoreSettings
from edgeauth.revocations import RevocationFollower, Tap, file_stamp
from edgeauth.store.base import Store

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What the feed drives: the validator."""

    def revoked(self, digests: Sequence[bytes]) -> None: ...
    def vouched(self, heard_all: bool) -> None: ...


class Source(Protocol):
    """A path that can miss revocations, so reports to the feed when it cannot hear."""

    async def start(self, tap: Tap) -> None: ...
    async def stop(self) -> None: ...


class RevocationFeed:
    """The paths of one worker, started into one sink by `attach`."""

    def __init__(self, store: Store, sources: Sequence[Source], bus: WorkerBus | None) -> None:
        self._store = store
        self._sources = sources
        self._bus = bus

    async def attach(self, sink: Sink) -> None:
        """Start every path into `sink` (the store's first, so this worker evicts before it
        tells the others)."""
        self._store.on_revoked(sink.revoked)
        tap = _Vouching(sink)
        for source in self._sources:
            await source.start(tap)
        if self._bus is not None:
            self._store.on_revoked(self._bus.publish)
            self._bus.attach(sink.revoked)

    async def stop(self) -> None:
        try:
            for source in self._sources:
                await source.stop()
        finally:
            if self._bus is not None:
                self._bus.close()


class _Vouching:
    """The rule above, as the `Tap` every source reports to."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._unheard: set[str] = set()  # the paths that cannot vouch right now

    def revoked(self, digests: Sequence[bytes]) -> None:
        self._sink.revoked(digests)

    def lost(self, path: str, reason: str, *, expected: bool = False) -> None:
        """`path` may miss revocations from now on; `expected` (still connecting at start)
        is no incident, so it is logged below error."""
        if path in self._unheard:
            return
        level = logging.INFO if expected else logging.ERROR
        log.log(level, "%s cannot vouch (%s): cache distrusted until it is back", path, reason)
        self._unheard.add(path)
        if len(self._unheard) == 1:
            self._sink.vouched(False)

    def back(self, path: str) -> None:
        """`path` hears every revocation again."""
        if path not in self._unheard:
            return
        log.info("%s is back", path)
        self._unheard.discard(path)
        if not self._unheard:
            self._sink.vouched(True)


def feed_for(store: Store, settings: StoreSettings, bus: WorkerBus | None) -> RevocationFeed:
    """The feed of one worker: the log always, NOTIFY on PostgreSQL, the bus under a
    supervisor."""
    stamp = file_stamp(settings.path) if settings.backend == "sqlite" else None
    sources: list[Source] = [RevocationFollower(store, stamp=stamp)]
    if settings.backend == "postgres":
        from edgeauth.store.postgres_listen import NotifyListener

        sources.append(NotifyListener(settings.dsn))
    return RevocationFeed(store, sources, bus)
