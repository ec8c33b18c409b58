"""The log follower reads the SQLite revocation log only when the database files changed, and
still hears a revocation written by another connection (the CLI, another process) at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from edgeauth.config import StoreSettings
from edgeauth.feed import feed_for
from edgeauth.revocations import RECHECK_SECONDS, file_stamp
from edgeauth.store.sqlite import SQLiteStore
from tests.store.records import mint, new_credential


class CountingLog(SQLiteStore):
    """A real SQLite store that counts reads of its revocation log."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        self.reads += 1
        return await super().revocations_since(seq, limit)


class Sink:
    def __init__(self) -> None:
        self.revoked_digests: list[bytes] = []
        self.heard = asyncio.Event()

    def revoked(self, digests: Sequence[bytes]) -> None:
        self.revoked_digests.extend(digests)
        self.heard.set()

    def vouched(self, heard_all: bool) -> None:
        pass


async def test_no_read_while_nothing_changes_and_another_connections_revocation_is_heard(
    tmp_path: Path,
) -> None:
    path = tmp_path / "edgeauth.db"
    store = CountingLog(path)
    other = SQLiteStore(path)  # as `edgeauth tokens revoke` would write, beside the worker
    await store.open()
    await other.open()
    now = time.time()
    consumer = await other.create_consumer("alice", None)
    credential = await other.create_credential(new_credential(consumer.id))
    minted = mint(credential.id, now)
    await other.save_token(minted.record)
    sink = Sink()
    feed = feed_for(store, StoreSettings(path=path), None)
    await feed.attach(sink)
    try:
        await asyncio.sleep(0.3)  # thirty poll intervals with nothing written
        assert store.reads <= 2, "the log was read although the database did not change"
        before = store.reads
        assert await other.revoke_token(minted.record.id, time.time())
        await asyncio.wait_for(sink.heard.wait(), RECHECK_SECONDS / 2)  # the stamp saw it
        assert minted.record.access_digest in sink.revoked_digests
        assert store.reads > before
    finally:
        await feed.stop()
        await other.close()
        await store.close()


def test_the_stamp_changes_with_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "edgeauth.db"
    stamp = file_stamp(path)
    missing = stamp()
    assert missing == (None, None)

    async def write(n: int) -> list[object]:
        store = SQLiteStore(path)
        await store.open()
        stamps = [stamp()]
        try:
            for i in range(n):
                await store.create_consumer(f"c{i}", None)
                stamps.append(stamp())
        finally:
            await store.close()
        return stamps

    stamps = asyncio.run(write(5))
    assert len(set(stamps)) == len(stamps)  # no two commits leave the same stamp
