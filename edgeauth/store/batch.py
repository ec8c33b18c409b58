"""Group commit: writes that arrive while a commit is in flight share the next one.

With synchronous=FULL every SQLite commit waits for an fsync, so one transaction per issued
token caps issuance at the disk's fsync rate. Batching keeps each token durable before its
caller hears back (the caller waits for the commit that holds its row) while the disk sees
one commit per batch.
Rule: `write_many` gives each row its own outcome (a row it refuses is left out of the commit
and its caller alone gets the error); a batch that fails as a whole is retried one row at a
time, so only the row at fault gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from edgeauth.errors import StoreUnavailable

log = logging.getLogger(__name__)

P = TypeVar("P")
MAX_BATCH = 256
Outcome = Exception | None  # None: the row is committed; else why it was left out


class GroupCommit(Generic[P]):
    """Queue of rows for one insert statement; `add()`'s future is done once its row is
    committed.

    `write_many(rows)` commits the rows it accepts in one transaction and returns one Outcome
    per row, in order; if it raises, it committed nothing. `write_one(row)` commits one row
    or raises.
    """

    def __init__(
        self,
        write_many: Callable[[list[P]], Awaitable[Sequence[Outcome]]],
        write_one: Callable[[P], Awaitable[None]],
    ) -> None:
        self._write_many = write_many
        self._write_one = write_one
        self._pending: list[tuple[P, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, row: P) -> asyncio.Future[None]:
        """Queue `row`: the future is done once it is committed, or fails with why it was not.
        Cancelling the future does not cancel the commit."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return done

    async def close(self) -> None:
        """Finish what is queued (the store is still open when this is called)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._commit(batch)
        except BaseException as exc:
            for _, done in self._pending:
                _settle(done, StoreUnavailable())
            self._pending.clear()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._flusher = None

    async def _commit(self, batch: list[tuple[P, asyncio.Future[None]]]) -> None:
        try:
            outcomes = await self._write_many([row for row, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.debug("group commit of %d rows failed (%r): one at a time", len(batch), exc)
            for row, done in batch:
                try:
                    await self._write_one(row)
                except Exception as one:
                    _settle(done, one)
                else:
                    _settle(done, None)
        except BaseException:
            for _, done in batch:
                _settle(done, StoreUnavailable())
            raise
        else:
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                _settle(done, outcome)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
