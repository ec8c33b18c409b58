"""Following the store's revocation log, so that every worker evicts what any process revoked.

Rule 1: the log is written in the same transaction as the revocation, so nothing is missed:
a worker that polls it evicts every revoked digest within one poll interval (design §8).
Rule 2: fail closed: when the log cannot be read, the whole cache is dropped, so requests go
to the store (and get 503 while it is down) instead of trusting possibly-revoked entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from edgeauth.errors import StoreError
from edgeauth.store.base import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.01


class RevocationFollower:
    def __init__(
        self,
        store: Store,
        on_revoked: Callable[[Sequence[bytes]], None],
        on_lost: Callable[[], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        self._store = store
        self._on_revoked = on_revoked
        self._on_lost = on_lost
        self._interval = interval
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start from the log's head: this worker's cache is empty, older entries are moot."""
        self._seq = await self._store.revocation_head()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        healthy = True
        while True:
            await asyncio.sleep(self._interval)
            try:
                rows = await self._store.revocations_since(self._seq)
            except StoreError as exc:
                if healthy:
                    log.error("revocation log unreadable, cache dropped: %s", exc)
                healthy = False
                self._on_lost()
                continue
            if not healthy:
                log.info("revocation log readable again")
                healthy = True
            if rows:
                self._seq = rows[-1][0]
                self._on_revoked([digest for _, digest in rows])
