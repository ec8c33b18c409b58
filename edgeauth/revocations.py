"""The revocation log as a path of the revocation feed (feed.py), and the `Tap` every path
reports to.

The log is written in the same transaction as the revocation, so nothing is missed: a worker
that polls it evicts every revoked digest within one poll interval (design §8). While it cannot
be read, the follower tells the feed so, and the feed's one fail-closed rule applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

from edgeauth.store.base import Store

POLL_SECONDS = 0.01
LOG = "revocation log"


class Tap(Protocol):
    """What a path tells the feed: digests revoked, and whether it can vouch for freshness."""

    def revoked(self, digests: Sequence[bytes]) -> None: ...
    def lost(self, path: str, reason: str, *, expected: bool = False) -> None: ...
    def back(self, path: str) -> None: ...


class RevocationFollower:
    """Polls the revocation log every `interval`."""

    def __init__(self, store: Store, interval: float = POLL_SECONDS) -> None:
        self._store = store
        self._interval = interval
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, tap: Tap) -> None:
        """Start from the log's head: this worker's cache is empty, older entries are moot."""
        self._seq = await self._store.revocation_head()
        self._task = asyncio.get_running_loop().create_task(self._run(tap))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, tap: Tap) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                rows = await self._store.revocations_since(self._seq)
            except Exception as exc:  # any failure fails closed and is retried, never ends the poll
                tap.lost(LOG, f"unreadable: {exc}")
                continue
            tap.back(LOG)
            if rows:
                self._seq = rows[-1][0]
                tap.revoked([digest for _, digest in rows])
