"""The Store on one SQLite file (design §7): core.py's SQLStore over one aiosqlite connection,
WAL, synchronous=FULL.

Invariants (beside core.py's): every statement runs under one asyncio.Lock and every write
inside BEGIN IMMEDIATE, so writers take turns, across stores and processes, and no write needs
a row lock (the dialect's are empty); the revocation log is an AUTOINCREMENT table written in
the write's transaction, so seq order is commit order. Issued tokens share commits
(batch.GroupCommit: one fsync per batch, not per token), checked against their clients read
once per batch. Identical reads queued behind the same turn share one execution (`_Reads`):
one SELECT, not one per request, when many token requests look up the same client. The
schema, SQLite's own statements and its dialect live in sqlite_schema.py; this module alone
talks to aiosqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, Credential, TokenRecord
from edgeauth.store.batch import GroupCommit
from edgeauth.store.core import SQLStore
from edgeauth.store.rows import code_values, to_credential, token_values
from edgeauth.store.rules import refusal, refuse_newer_schema
from edgeauth.store.sql import INSERT_CODE, TOKENS_INSERT, VIEWS_SELECT
from edgeauth.store.sqlite_schema import (
    CLIENTS,
    IMPORT_TOKENS,
    LOG_REVOCATION,
    MIGRATIONS,
    SQLITE,
    json_list,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[object]
Rows = list[sqlite3.Row]
# A token waiting for its group commit: TOKENS_INSERT's parameters, and the client its request
# was checked against (None: saved unchecked).
Pending = tuple[Params, Credential | None]
LOOKUP_BATCH = 500  # digests per token lookup statement (SQLite allows 32,766 parameters)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one boundary where driver exceptions become StoreErrors (architecture rule 5)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if text.startswith("UNIQUE") or "PRIMARY KEY" in text:
            table, _, column = text.rpartition(": ")[2].rpartition(".")
            raise Conflict(table, column) from exc
        raise StoreError(f"integrity rule broken: {text}") from exc
    except (sqlite3.Error, ValueError, OSError) as exc:  # aiosqlite: ValueError once closed
        log.warning("sqlite store unavailable: %s: %s", type(exc).__name__, exc)
        raise StoreUnavailable() from exc


class SQLiteTx:
    """core.Tx on the connection, inside the write's BEGIN IMMEDIATE."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, *params: object) -> list[sqlite3.Row]:
        return await _fetch(self._db, sql, params)

    async def execute(self, sql: str, *params: object) -> int:
        return await _exec(self._db, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        async with self._db.executemany(sql, rows) as cursor:
            return cursor.rowcount


class SQLiteFile:
    """core.Database on one SQLite file."""

    dialect = SQLITE

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._tokens = GroupCommit(self._insert_tokens, self._insert_token)
        self._reads = _Reads(self._read_now)
        self._lookups = _Lookups(self._read_views)

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Creates the file (0600) if missing, connects, sets the pragmas, migrates."""
        async with self._lock:
            if self._db is None:
                self._db = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        with _translated():
            await asyncio.to_thread(_prepare_file, self.path)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            with _translated():
                await self._configure(db)
                await _migrate(db)
        except BaseException:
            await _close_quietly(db)
            raise
        return db

    async def _configure(self, db: aiosqlite.Connection) -> None:
        db.row_factory = sqlite3.Row
        await _exec(db, f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        mode = await _enter_wal(db, deadline=time.monotonic() + self._busy_timeout_ms / 1000)
        if mode != "wal":
            log.warning("sqlite store %s: journal_mode is %s, not wal", self.path, mode)
        await _exec(db, "PRAGMA foreign_keys = ON")
        await _exec(db, "PRAGMA synchronous = FULL")

    async def close(self) -> None:
        await self._tokens.close()
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:  # let the statement in flight finish
                await _close_quietly(db)

    async def diagnostics(self) -> dict[str, object]:
        """This connection's pragmas and the schema version."""
        names = ("journal_mode", "foreign_keys", "synchronous", "busy_timeout", "user_version")
        return {name: (await self.read(f"PRAGMA {name}"))[0][0] for name in names}

    # reads and writes ------------------------------------------------------------------
    async def read(self, sql: str, *params: object) -> Rows:
        """The rows, from one execution shared with the identical reads still waiting for
        their turn (see _Reads)."""
        return await self._reads.read(sql, params)

    def token_view(self, access_digest: bytes) -> Awaitable[Rows]:
        """Token lookups waiting for their turn share one statement (see _Lookups)."""
        return self._lookups.find(access_digest)

    async def _read_views(self, take: Callable[[], list[bytes]]) -> Rows:
        with _translated():
            async with self._lock:
                digests = take()
                marks = ", ".join(["?"] * len(digests))
                sql = f"{VIEWS_SELECT} WHERE t.access_digest IN ({marks})"
                return await _fetch(self._connection(), sql, digests)

    async def _read_now(self, sql: str, params: Params, started: Callable[[], None]) -> Rows:
        with _translated():
            async with self._lock:
                started()
                return await _fetch(self._connection(), sql, params)

    async def write(
        self,
        work: Callable[[SQLiteTx], Awaitable[tuple[T, Sequence[bytes]]]],
        *,
        atomic: bool = True,
    ) -> tuple[T, Sequence[bytes]]:
        """One BEGIN IMMEDIATE transaction, `atomic` or not, that also logs the digests."""

        async def logged(db: aiosqlite.Connection) -> tuple[T, Sequence[bytes]]:
            result, dead = await work(SQLiteTx(db))
            if dead:
                at = time.time()
                async with db.executemany(LOG_REVOCATION, [(d, at) for d in dead]):
                    pass
            return result, dead

        with _translated():
            async with self._lock:
                return await _in_transaction(self._connection(), logged)

    def save_token(self, record: TokenRecord, expected: Credential | None) -> Awaitable[None]:
        """Waits for the group commit that holds the token (see store/batch.py)."""
        return self._tokens.add((token_values(record), expected))

    async def save_code(self, code: AuthCode, expected: Credential | None) -> None:
        async def work(tx: SQLiteTx) -> tuple[None, list[bytes]]:
            [refused] = await _refusals(tx, [expected], redirects=True)
            if refused is not None:
                raise refused
            await tx.execute(INSERT_CODE, *code_values(code))
            return None, []

        await self.write(work)

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        async def work(tx: SQLiteTx) -> tuple[int, list[bytes]]:
            return await tx.executemany(IMPORT_TOKENS, map(token_values, records)), []

        return (await self.write(work))[0]

    async def _insert_tokens(self, rows: list[Pending]) -> list[ClientChanged | None]:
        """One transaction for a whole group of issued tokens: the credentials they expect
        are read once, and a token whose client changed since its request was checked is
        left out and refused alone."""

        async def work(tx: SQLiteTx) -> tuple[list[ClientChanged | None], list[bytes]]:
            outcomes = await _refusals(tx, [client for _, client in rows], redirects=False)
            kept = [params for (params, _), no in zip(rows, outcomes, strict=True) if no is None]
            await tx.executemany(TOKENS_INSERT, kept)
            return outcomes, []

        return (await self.write(work))[0]

    async def _insert_token(self, row: Pending) -> None:
        [refused] = await self._insert_tokens([row])
        if refused is not None:
            raise refused

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("the sqlite store is not open")
        return self._db


class _Reads:
    """Reads that share an execution: a read is one task, which identical reads (same SQL,
    same parameters of the same types) join until it starts, i.e. until it has its turn on
    the connection. What a joiner gets was read after it asked, as if it had run alone; it
    just never runs. Each reader gets its own list of the shared (immutable) rows."""

    def __init__(
        self, run: Callable[[str, Params, Callable[[], None]], Coroutine[Any, Any, Rows]]
    ) -> None:
        self._run = run
        self._waiting: dict[tuple[object, ...], asyncio.Task[Rows]] = {}

    async def read(self, sql: str, params: Params) -> Rows:
        key = (sql, *params, *map(type, params))
        task = self._waiting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._run(sql, params, lambda: self._started(key))
            )
            self._waiting[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        return list(await asyncio.shield(task))  # a cancelled reader leaves the others theirs

    def _started(self, key: tuple[object, ...]) -> None:
        self._waiting.pop(key, None)

    def _ended(self, key: tuple[object, ...], task: asyncio.Task[Rows]) -> None:
        """Forgets a read that ended before its turn, and marks its failure as seen: all its
        readers may have been cancelled."""
        if self._waiting.get(key) is task:
            del self._waiting[key]
        if not task.cancelled():
            task.exception()


class _Lookups:
    """Token lookups (find_token) of distinct digests share one statement: those waiting when
    the connection comes free are read together, `IN (...)`, up to LOOKUP_BATCH of them. A
    flood of unknown tokens cost one trip to SQLite's thread per token, most of what such a
    request cost. As with _Reads, every digest is read after its caller asked."""

    def __init__(
        self, run: Callable[[Callable[[], list[bytes]]], Coroutine[Any, Any, Rows]]
    ) -> None:
        self._run = run  # reads the digests its argument hands over, once it has the turn
        self._waiting: dict[bytes, asyncio.Future[Rows]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def find(self, digest: bytes) -> Rows:
        loop = asyncio.get_running_loop()
        future = self._waiting.get(digest)
        if future is None:
            future = self._waiting[digest] = loop.create_future()
            future.add_done_callback(_seen)
        if self._reader is None:
            self._reader = loop.create_task(self._read_all())
        return list(await asyncio.shield(future))  # a cancelled caller leaves the others theirs

    async def _read_all(self) -> None:
        try:
            while self._waiting:
                await self._read_batch()
        finally:
            self._reader = None

    async def _read_batch(self) -> None:
        batch: dict[bytes, asyncio.Future[Rows]] = {}

        def take() -> list[bytes]:
            for digest in list(itertools.islice(self._waiting, LOOKUP_BATCH)):
                batch[digest] = self._waiting.pop(digest)
            return list(batch)

        try:
            rows = await self._run(take)
        except BaseException as exc:
            failed = batch or dict(self._waiting)  # no turn at all: every waiting caller
            for digest, future in failed.items():
                self._waiting.pop(digest, None)
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        found: dict[bytes, Rows] = {}
        for row in rows:
            found.setdefault(row["access_digest"], []).append(row)
        for digest, future in batch.items():
            if not future.done():
                future.set_result(found.get(digest, []))


def _seen(future: asyncio.Future[Rows]) -> None:
    """Marks a lookup's failure as retrieved: all its callers may have been cancelled."""
    if not future.cancelled():
        future.exception()


class SQLiteStore(SQLStore):
    """`Store` on one SQLite file; see the module docstring for its rules."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        file = SQLiteFile(path, busy_timeout_ms)
        super().__init__(file)
        self.path = file.path


# helpers ---------------------------------------------------------------------------------
def _prepare_file(path: Path) -> None:
    """Creates the parent directory and the file with mode 0600; SQLite gives its -wal and
    -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


async def _close_quietly(db: aiosqlite.Connection) -> None:
    try:
        await db.close()
    except (sqlite3.Error, ValueError) as exc:
        log.warning("closing the sqlite store: %s", exc)


async def _enter_wal(db: aiosqlite.Connection, deadline: float) -> str:
    """Switches the file to WAL. Two connections switching a new file at once can fail
    without waiting on busy_timeout (SQLITE_BUSY, even SQLITE_IOERR): retry until deadline."""
    while True:
        try:
            return str((await _fetch(db, "PRAGMA journal_mode = WAL"))[0][0]).lower()
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.01)


async def _in_transaction(
    db: aiosqlite.Connection, work: Callable[[aiosqlite.Connection], Awaitable[T]]
) -> T:
    await _fetch(db, "BEGIN IMMEDIATE")  # _fetch, not _exec: one trip to the thread, not two
    try:
        result = await work(db)
        await _fetch(db, "COMMIT")
    except BaseException:
        try:
            await _fetch(db, "ROLLBACK")
        except (sqlite3.Error, ValueError) as exc:
            log.debug("rollback failed: %s", exc)
        raise
    return result


async def _migrate(db: aiosqlite.Connection) -> None:
    """Applies pending MIGRATIONS, one transaction each; BEGIN IMMEDIATE makes the version
    check and the change atomic, so processes opening the same file at once take turns."""
    while await _in_transaction(db, _migrate_one):
        pass


async def _migrate_one(db: aiosqlite.Connection) -> bool:
    version = int((await _fetch(db, "PRAGMA user_version"))[0][0])
    refuse_newer_schema(version, len(MIGRATIONS))
    if version == len(MIGRATIONS):
        return False
    for statement in _statements(MIGRATIONS[version]):
        await _exec(db, statement)
    await _exec(db, f"PRAGMA user_version = {version + 1}")
    log.info("sqlite store migrated to schema version %d", version + 1)
    return True


def _statements(script: str) -> Iterator[str]:
    """Splits a script into statements (executescript would COMMIT our transaction)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


async def _exec(db: aiosqlite.Connection, sql: str, params: Params = ()) -> int:
    """The statement's row count: two trips to aiosqlite's thread (execute, then close the
    cursor), where _fetch makes one."""
    async with db.execute(sql, params) as cursor:
        return cursor.rowcount


async def _fetch(db: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _refusals(
    tx: SQLiteTx, expected: Sequence[Credential | None], *, redirects: bool
) -> list[ClientChanged | None]:
    """rules.refusal for each save checked against its `expected` client (None: unchecked),
    the credentials they expect read in one statement."""
    ids = [client.id for client in expected if client is not None]
    rows = await tx.fetch(CLIENTS, json_list(ids)) if ids else []
    clients = {row["id"]: to_credential(row, SQLITE.strings) for row in rows}
    return [refusal(clients, client, redirects=redirects) for client in expected]
