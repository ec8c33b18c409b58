"""Group commit (store/batch.py): rows share commits, and only a row at fault fails."""

from __future__ import annotations

import asyncio

import pytest

from edgeauth.errors import ClientChanged, Conflict
from edgeauth.store.batch import MAX_BATCH, GroupCommit, Outcome


class Table:
    """A tiny in-memory table with a unique key and a slow commit, like a disk would have;
    it refuses the rows in `refused` one by one, keeping the rest of their commit."""

    def __init__(self, refused: frozenset[int] = frozenset()) -> None:
        self.refused = refused
        self.rows: list[int] = []
        self.commits: list[int] = []

    async def many(self, rows: list[int]) -> list[Outcome]:
        await asyncio.sleep(0.001)
        kept = [r for r in rows if r not in self.refused]
        if len(set(kept)) != len(kept) or any(r in self.rows for r in kept):
            raise Conflict("tokens", "id")
        self.rows.extend(kept)
        self.commits.append(len(kept))
        return [ClientChanged() if r in self.refused else None for r in rows]

    async def one(self, row: int) -> None:
        [outcome] = await self.many([row])
        if outcome is not None:
            raise outcome


async def test_rows_arriving_together_share_one_commit_and_all_land() -> None:
    table = Table()
    group = GroupCommit(table.many, table.one)
    await asyncio.gather(*(group.add(i) for i in range(100)))
    assert sorted(table.rows) == list(range(100))
    assert table.commits == [100]


async def test_rows_arriving_during_a_commit_wait_for_the_next_and_batches_are_capped() -> None:
    table = Table()
    group = GroupCommit(table.many, table.one)
    first = asyncio.ensure_future(group.add(-1))
    await asyncio.sleep(0)  # the first commit is now in flight
    await asyncio.gather(first, *(group.add(i) for i in range(MAX_BATCH + 10)))
    assert table.commits == [1, MAX_BATCH, 10]
    assert len(table.rows) == MAX_BATCH + 11


async def test_a_failing_batch_is_retried_row_by_row_so_only_the_duplicate_fails() -> None:
    table = Table()
    group = GroupCommit(table.many, table.one)
    await group.add(7)
    results = await asyncio.gather(*(group.add(i) for i in range(5, 10)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "Conflict",
        "NoneType",
        "NoneType",
    ]
    assert sorted(table.rows) == [5, 6, 7, 8, 9]


async def test_a_row_refused_by_its_batch_fails_alone_in_the_same_commit() -> None:
    table = Table(refused=frozenset({2, 5}))
    group = GroupCommit(table.many, table.one)
    results = await asyncio.gather(*(group.add(i) for i in range(8)), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, ClientChanged)] == [2, 5]
    assert all(r is None for i, r in enumerate(results) if i not in (2, 5))
    assert sorted(table.rows) == [0, 1, 3, 4, 6, 7]
    assert table.commits == [6]  # one commit, no retry row by row


async def test_a_refused_row_in_a_failing_batch_is_refused_again_row_by_row() -> None:
    table = Table(refused=frozenset({6}))
    group = GroupCommit(table.many, table.one)
    await group.add(7)
    results = await asyncio.gather(*(group.add(i) for i in range(5, 10)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "ClientChanged",
        "Conflict",
        "NoneType",
        "NoneType",
    ]
    assert sorted(table.rows) == [5, 7, 8, 9]


async def test_a_cancelled_caller_does_not_cancel_the_commit_of_its_row() -> None:
    table = Table()
    group = GroupCommit(table.many, table.one)
    waiter = asyncio.ensure_future(group.add(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await group.close()
    assert table.rows == [1]
