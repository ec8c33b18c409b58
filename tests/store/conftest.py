"""The `database` and `store` fixtures: every contract test runs once per backend.

Adding a backend is one entry in BACKENDS: an async context manager that yields a fresh,
empty `Database` and removes it afterwards (and skips when the backend is missing).

PostgreSQL: the server at EDGEAUTH_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test)
gives each test a fresh schema with a random name, reached through the DSN's search_path, and
dropped afterwards. No server: the postgres tests skip, unless EDGEAUTH_REQUIRE_PG=1 (CI), where
they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from edgeauth.store.base import Store
from edgeauth.store.sqlite import SQLiteStore
from tests.store.records import Announcements, App, new_credential


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


PG_DSN = os.environ.get("EDGEAUTH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_pg_down: list[str] = []  # why the server did not answer, once it did not


@dataclass(frozen=True)
class PgSchema:
    """A fresh schema on the test server; `dsn` reaches it (search_path, application_name)."""

    name: str
    dsn: str
    application_name: str


def with_query(dsn: str, **params: str) -> str:
    """`dsn` with `params` added to its query string."""
    parts = urlsplit(dsn)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit(parts._replace(query=query))


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("EDGEAUTH_REQUIRE_PG") == "1":
        pytest.fail(f"EDGEAUTH_REQUIRE_PG=1 and {reason}")
    pytest.skip(reason, allow_module_level=True)


def require_driver() -> None:
    """Skips (or fails, if EDGEAUTH_REQUIRE_PG=1) the calling test module without asyncpg."""
    if importlib.util.find_spec("asyncpg") is None:
        _unavailable("asyncpg is not installed (the `postgres` extra)")


async def pg_connect(dsn: str = PG_DSN) -> Any:
    """A raw asyncpg connection to the test server; skips (or fails if EDGEAUTH_REQUIRE_PG=1)
    when there is no driver or no server."""
    reason = _pg_down[0] if _pg_down else None
    if reason is None:
        try:
            import asyncpg  # type: ignore[import-untyped]
        except ImportError as exc:
            reason = f"asyncpg is not installed: {exc}"
        else:
            try:
                return await asyncpg.connect(dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                reason = f"no PostgreSQL server answers at {PG_DSN}: {type(exc).__name__}: {exc}"
        _pg_down.append(reason)
    _unavailable(reason)


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[PgSchema]:
    """A new schema with a random name, dropped (with whatever is still connected to it)
    afterwards."""
    admin = await pg_connect()
    name = f"edgeauth_test_{secrets.token_hex(6)}"
    try:
        await admin.execute(f"CREATE SCHEMA {name}")
        options = f"-csearch_path={name}"
        dsn = with_query(PG_DSN, options=options, application_name=name)
        yield PgSchema(name=name, dsn=dsn, application_name=name)
    finally:
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                name,
            )
            await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await admin.close()


async def pg_at_rest(schema: str) -> bytes:
    """Every table of `schema` in COPY's binary format: raw bytea and text bytes."""
    admin = await pg_connect()
    chunks: list[bytes] = []

    async def keep(data: bytes) -> None:
        chunks.append(bytes(data))

    try:
        tables = await admin.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema
        )
        for row in tables:
            await admin.copy_from_table(
                row["tablename"], schema_name=schema, output=keep, format="binary"
            )
    finally:
        await admin.close()
    return b"".join(chunks)


@contextlib.asynccontextmanager
async def _postgres(tmp_path: Path) -> AsyncIterator[Database]:
    from edgeauth.store.postgres import PostgresStore

    async with pg_schema() as schema:
        yield Database(
            backend="postgres",
            make=lambda: PostgresStore(schema.dsn, pool_size=4),
            at_rest=lambda: pg_at_rest(schema.name),
            unreachable=lambda: PostgresStore(
                "postgresql://postgres@127.0.0.1:1/test", connect_timeout=2
            ),
        )


BACKENDS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Database]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
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


@pytest.fixture
async def app(store: Store) -> App:
    consumer = await store.create_consumer("alice", "alice-1", ("gold",))
    credential = await store.create_credential(new_credential(consumer.id))
    return App(consumer, credential)


@pytest.fixture
def heard(store: Store) -> Announcements:
    listener = Announcements()
    store.on_revoked(listener)
    return listener
