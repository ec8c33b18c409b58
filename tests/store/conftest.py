"""The `database` and `store` fixtures: every contract test runs once per backend.

Adding a backend is one entry in BACKENDS: an async context manager that yields a fresh,
empty `Database` and removes it afterwards (and skips when the backend is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from edgeauth.store.base import Store
from edgeauth.store.sqlite import SQLiteStore


@dataclass(frozen=True)
class Database:
    """One empty database of one backend, and what tests need to reach behind the Store."""

    backend: str
    make: Callable[[], Store]  # a new, unopened Store on this database
    at_rest: Callable[[], Awaitable[bytes]]  # every byte the database keeps
    unreachable: Callable[[], Store]  # a Store whose database cannot be reached


def _sqlite_files(path: Path) -> bytes:
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return b"".join(file.read_bytes() for file in files if file.exists())


@contextlib.asynccontextmanager
async def _sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "state" / "edgeauth.db"  # the directory does not exist yet
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")

    async def at_rest() -> bytes:
        return await asyncio.to_thread(_sqlite_files, path)

    yield Database(
        backend="sqlite",
        make=lambda: SQLiteStore(path),
        at_rest=at_rest,
        unreachable=lambda: SQLiteStore(blocker / "edgeauth.db"),
    )


BACKENDS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Database]]] = {
    "sqlite": _sqlite,
}


@pytest.fixture(params=list(BACKENDS))
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with BACKENDS[cast(str, request.param)](tmp_path) as database:
        yield database


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    store = database.make()
    await store.open()
    yield store
    await store.close()
