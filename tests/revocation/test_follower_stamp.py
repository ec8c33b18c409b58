"""The log follower reads the SQLite revocation log only when the database files changed, and
still hears a revocation written by another connection (the CLI, another process) at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from edgeauth.revocations import RevocationFollower, file_stamp
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


class Tap:
    """What the follower reports to (the feed, in a worker)."""

    def __init__(self) -> None:
        self.revoked_digests: list[bytes] = []
        self.heard = asyncio.Event()

    def revoked(self, digests: Sequence[bytes]) -> None:
        self.revoked_digests.extend(digests)
        self.heard.set()

    def lost(self, path: str, reason: str, *, expected: bool = False) -> None:
        raise AssertionError(f"{path} lost: {reason}")

    def back(self, path: str) -> None:
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
    tap = Tap()
    # No recheck within the test: whatever is read after the first read, the stamp asked for.
    follower = RevocationFollower(store, stamp=file_stamp(path), recheck=3600.0)
    await follower.start(tap)
    try:
        await asyncio.sleep(0.3)  # thirty poll intervals with nothing written
        assert store.reads <= 1, "the log was read although the database did not change"
        assert await other.revoke_token(minted.record.id, time.time())
        await asyncio.wait_for(tap.heard.wait(), 30)
        assert minted.record.access_digest in tap.revoked_digests
    finally:
        await follower.stop()
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
