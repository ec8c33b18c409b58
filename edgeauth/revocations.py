"""The revocation log as a path of the revocation feed (feed.py), and the `Tap` every path
reports to.

The log is written in the same transaction as the revocation, so nothing is missed: a worker
that polls it evicts every revoked digest within one poll interval (design §8). While it cannot
be read, the follower tells the feed so, and the feed's one fail-closed rule applies.

A poll reads the log only if the store may have changed since the last read: with SQLite,
`file_stamp` (the database and WAL files' identity, size and times, one stat each, no thread
hop) tells, for every commit writes the WAL. A read every 10 ms cost a round trip to the
store's thread, and the worker's GIL, a hundred times a second while nothing changed. A change
the stamp cannot see (two writes within the file system's timestamp tick that leave the size
as it was) is still read within RECHECK_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Protocol

from edgeauth.store.base import Store

POLL_SECONDS = 0.01
RECHECK_SECONDS = 1.0
LOG = "revocation log"
Stamp = Callable[[], Hashable]


def file_stamp(path: Path) -> Stamp:
    """What changes whenever an SQLite database in WAL mode commits: the identity, size and
    times of its file and of its WAL (None for one that does not exist)."""
    files = (str(path), f"{path}-wal")

    def stamp() -> Hashable:
        facts: list[tuple[int, int, int, int] | None] = []
        for name in files:
            try:
                st = os.stat(name)
            except OSError:
                facts.append(None)
            else:
                facts.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(facts)

    return stamp


class Tap(Protocol):
    """What a path tells the feed: digests revoked, and whether it can vouch for freshness."""

    def revoked(self, digests: Sequence[bytes]) -> None: ...
    def lost(self, path: str, reason: str, *, expected: bool = False) -> None: ...
    def back(self, path: str) -> None: ...


class RevocationFollower:
    """Polls the revocation log every `interval`; with a `stamp`, only when it changed
    (or RECHECK_SECONDS passed)."""

    def __init__(
        self,
        store: Store,
        interval: float = POLL_SECONDS,
        stamp: Stamp | None = None,
        recheck: float = RECHECK_SECONDS,
    ) -> None:
        self._store = store
        self._interval = interval
        self._stamp = stamp
        self._recheck = recheck
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
        loop = asyncio.get_running_loop()
        seen: Hashable = None  # the stamp before the last good read; None: read next time
        read_at = 0.0
        while True:
            await asyncio.sleep(self._interval)
            # Taken before the read: a commit after it changes the next stamp.
            stamp = None if self._stamp is None else self._stamp()
            if stamp is not None and stamp == seen and loop.time() - read_at < self._recheck:
                continue
            try:
                rows = await self._store.revocations_since(self._seq)
            except Exception as exc:  # any failure fails closed and is retried, never ends the poll
                tap.lost(LOG, f"unreadable: {exc}")
                seen = None
                continue
            seen, read_at = stamp, loop.time()
            tap.back(LOG)
            if rows:
                self._seq = rows[-1][0]
                tap.revoked([digest for _, digest in rows])
