"""The revocation feed fails closed on any failure of a path and keeps following it: a path
that dies silently would leave cached validations trusted while revocations go unheard."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from edgeauth.config import StoreSettings
from edgeauth.feed import feed_for
from edgeauth.store.sqlite import SQLiteStore


class FailingLog(SQLiteStore):
    """A real SQLite store whose revocation log read fails, with any error, while told to."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failure: Exception | None = None

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        if self.failure is not None:
            raise self.failure
        return await super().revocations_since(seq, limit)


class Sink:
    """What the validator hears from the feed."""

    def __init__(self) -> None:
        self.trusted = asyncio.Event()
        self.distrusted = asyncio.Event()

    def revoked(self, digests: Sequence[bytes]) -> None:
        pass

    def vouched(self, heard_all: bool) -> None:
        if heard_all:
            self.distrusted.clear()
            self.trusted.set()
        else:
            self.trusted.clear()
            self.distrusted.set()


async def test_a_log_read_failing_with_any_error_distrusts_and_the_feed_goes_on(
    tmp_path: Path,
) -> None:
    store = FailingLog(tmp_path / "edgeauth.db")
    await store.open()
    sink = Sink()
    feed = feed_for(store, StoreSettings(path=tmp_path / "edgeauth.db"), None)
    await feed.attach(sink)
    try:
        for failure in (RuntimeError("not a StoreError"), ValueError("closed connection")):
            store.failure = failure
            await asyncio.wait_for(sink.distrusted.wait(), 10)
            store.failure = None
            await asyncio.wait_for(sink.trusted.wait(), 10)  # still polling: trusted again
    finally:
        await feed.stop()
        await store.close()
