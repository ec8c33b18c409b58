"""The Store on PostgreSQL (design §7): core.py's SQLStore through an asyncpg pool, for several
nodes on one database.

Invariants (beside core.py's): every write is one READ COMMITTED transaction (or, not atomic,
one statement), and races are settled by row locks (a waiting UPDATE, DELETE or FOR UPDATE
re-checks its WHERE on the winner's row, so exactly one of concurrent callers wins, on any
node; the dialect's FOR UPDATE and advisory locks say which). A save checked against its client
is one statement holding the credential row FOR SHARE, and every change to a credential takes
it FOR UPDATE first, so the later of the two sees the earlier. The logged digests are also
NOTIFYed in the write's transaction. A transaction that loses a deadlock or serialization
check is retried (up to three attempts in all). The `?N` parameters of sql.py's statements
and of both dialects are rewritten as `$N` here; postgres_schema.py's own statements are
written with `$N`.

NOTIFY: channel `edgeauth_revocations` (NOTIFY_CHANNEL); the payload is the logged digests
(killed or stale access digests, consumer markers) as lowercase hex, comma-separated, at most
100 per notification (6,499 bytes, under PostgreSQL's 8,000-byte limit), so a large
revocation sends several; `parse_notification` decodes one. They are delivered at COMMIT,
never for a rolled-back transaction. The channel is per database: deployments in several
schemas of one database hear each other (harmless: an extra eviction).

Revocation log order: a sequence would hand out seqs in nextval order, not commit order, and a
poller could skip a smaller seq committed late. Instead every log write advances the one row
of `revocation_head` in its transaction and holds that row lock until COMMIT: log writers
commit one at a time in seq order, so any snapshot sees a gapless prefix of the log and
`revocations_since(seq)` never returns a seq above one still to come. The cost is that killing
transactions (revocations, rotations) commit serially across nodes, the lock held only from the
log statement to COMMIT; NOTIFY serializes committers the same way anyway.

Connections: `pool_size` is the pool's maximum (one connection kept open). Unless the DSN sets
them, sessions get `statement_timeout` (5 s), `idle_in_transaction_session_timeout` and
`application_name=edgeauth`; the client also gives up after statement timeout + connect
timeout. The schema is the DSN's search_path (`?options=-csearch_path%3Dname` or
`?search_path=name`; default `public`); it must exist. Migrations run at open under a
transaction-level advisory lock (MIGRATION_LOCK_CLASS, hashtext(schema)), all pending ones in
one transaction; a schema newer than this code is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]

from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, Credential, TokenRecord
from edgeauth.store import postgres_schema as pg
from edgeauth.store.core import SQLStore, one_statement
from edgeauth.store.postgres_schema import (
    MIGRATION_LOCK_CLASS,
    MIGRATIONS,
    POSTGRES,
    client_params,
    import_params,
)
from edgeauth.store.rows import code_values, token_values
from edgeauth.store.rules import refuse_newer_schema
from edgeauth.store.sql import INSERT_CODE, TOKENS_INSERT, VIEW_OF_ACCESS

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK_CLASS",
    "NOTIFY_CHANNEL",
    "PostgresStore",
    "notify_payloads",
    "parse_notification",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Record = Mapping[str, Any]  # an asyncpg Record
NOTIFY_CHANNEL = "edgeauth_revocations"
DIGESTS_PER_NOTIFICATION = 100
_ATTEMPTS = 3
_NUMBERED = re.compile(r"\?(\d+)")
_MIGRATION_SECONDS = 600.0


class Connection(Protocol):
    """The part of asyncpg.Connection this module uses."""

    async def fetch(self, query: str, *args: object) -> list[Record]: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...

    async def execute(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str: ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[object]: ...


def notify_payloads(digests: Sequence[bytes]) -> list[str]:
    """The NOTIFY payloads announcing `digests`: hex, comma-separated, 100 at most each."""
    hexes = [bytes(d).hex() for d in digests]
    step = DIGESTS_PER_NOTIFICATION
    return [",".join(hexes[i : i + step]) for i in range(0, len(hexes), step)]


def parse_notification(payload: str) -> list[bytes]:
    """The digests of one notification on NOTIFY_CHANNEL; ValueError if it is not one."""
    return [bytes.fromhex(part) for part in payload.split(",") if part]


@contextlib.contextmanager
def _translated(*, opening: bool = False) -> Iterator[None]:
    """The one boundary where driver exceptions become StoreErrors (architecture rule 5),
    with SQLite's messages: a uniqueness clash is a Conflict naming its table and column, the
    caller's bad input (integrity, data exceptions) a plain StoreError, anything else
    StoreUnavailable (its cause logged, and told only when opening)."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(*_unique_column(exc)) from exc
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        raise StoreError(f"integrity rule broken: {exc}") from exc
    except asyncpg.TransactionRollbackError as exc:  # a deadlock: PostgresPool.write retries
        raise StoreUnavailable() from exc
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        OSError,  # TimeoutError included
        ValueError,  # asyncpg's client-side DataError, a malformed DSN
    ) as exc:
        if not opening and isinstance(exc, ValueError) and isinstance(exc, asyncpg.InterfaceError):
            raise StoreError(f"a value the database cannot take: {exc}") from exc
        log.warning("postgres store unavailable: %s: %s", type(exc).__name__, exc)
        if opening:
            raise StoreUnavailable(f"cannot open the postgres store: {exc}") from exc
        raise StoreUnavailable() from exc


def _unique_column(exc: Any) -> tuple[str, str]:
    """The table and column of a violated UNIQUE or PRIMARY KEY constraint of our schema
    (named by PostgreSQL's defaults `<table>_<column>_key` and `<table>_pkey`)."""
    table, name = str(exc.table_name), str(exc.constraint_name)
    if name == f"{table}_pkey":
        return table, "digest" if table == "codes" else "id"
    return table, name.removeprefix(f"{table}_").removesuffix("_key")


def _server_settings(dsn: str, statement_timeout_ms: int) -> dict[str, str]:
    """Session defaults for what the DSN (as a parameter or in `options`) does not set."""
    query = parse_qs(urlsplit(dsn).query)
    options = " ".join(query.get("options", ()))
    defaults = {
        "application_name": "edgeauth",
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(max(60_000, 2 * statement_timeout_ms)),
    }
    return {k: v for k, v in defaults.items() if k not in query and k not in options}


class PostgresTx:
    """core.Tx on a pooled connection (inside the write's transaction, if atomic)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *params: object) -> list[Record]:
        return await self._conn.fetch(_dollars(sql), *params)

    async def execute(self, sql: str, *params: object) -> int:
        return _count(await self._conn.execute(_dollars(sql), *params))


class PostgresPool:
    """core.Database on PostgreSQL through an asyncpg pool."""

    dialect = POSTGRES

    def __init__(
        self, dsn: str, pool_size: int, statement_timeout_ms: int, connect_timeout: float
    ) -> None:
        self.dsn = dsn
        self.pool_size = max(1, int(pool_size))
        self._statement_timeout_ms = int(statement_timeout_ms)
        self._connect_timeout = float(connect_timeout)
        # client-side bound of one statement, and of the wait for a pooled connection
        self._command_timeout = self._statement_timeout_ms / 1000 + self._connect_timeout
        self._pool: Any = None
        self._opening = asyncio.Lock()

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Creates the pool and runs pending migrations; idempotent."""
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect()

    async def _connect(self) -> Any:
        with _translated(opening=True):
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings=_server_settings(self.dsn, self._statement_timeout_ms),
            )
        try:
            with _translated(opening=True):
                async with pool.acquire(timeout=self._command_timeout) as conn:
                    await _migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # let the statements in flight finish
                await asyncio.wait_for(pool.close(), timeout=2 * self._command_timeout)
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("closing the postgres store: %s", exc)
                pool.terminate()

    async def diagnostics(self) -> dict[str, object]:
        """The session settings in effect, the schema and its version, the pool's sizes."""
        rows = await self.read(pg.DIAGNOSTICS)
        pool, settings = self._pool, dict(rows[0])
        if pool is not None:
            settings.update(pool_max_size=pool.get_max_size(), pool_size=pool.get_size())
        return settings

    # reads and writes ------------------------------------------------------------------
    async def read(self, sql: str, *params: object) -> list[Record]:
        with _translated():
            async with self._connection() as conn:
                return await conn.fetch(_dollars(sql), *params)

    def token_view(self, access_digest: bytes) -> Awaitable[list[Record]]:
        """One statement per digest: the pool runs concurrent lookups side by side."""
        return self.read(VIEW_OF_ACCESS, access_digest)

    async def write(
        self,
        work: Callable[[PostgresTx], Awaitable[tuple[T, Sequence[bytes]]]],
        *,
        atomic: bool = True,
    ) -> tuple[T, Sequence[bytes]]:
        """Retries a transaction that lost a deadlock or serialization check."""
        attempt = 1
        while True:
            try:
                return await self._attempt(work, atomic)
            except StoreUnavailable as exc:
                lost = isinstance(exc.__cause__, asyncpg.TransactionRollbackError)
                if not lost or attempt >= _ATTEMPTS:
                    raise
                log.warning("postgres store: %s; retrying", str(exc.__cause__).partition("\n")[0])
                attempt += 1

    async def _attempt(
        self, work: Callable[[PostgresTx], Awaitable[tuple[T, Sequence[bytes]]]], atomic: bool
    ) -> tuple[T, Sequence[bytes]]:
        with _translated():
            async with self._connection() as conn:
                if not atomic:
                    return await work(PostgresTx(conn))
                async with conn.transaction():
                    result, dead = await work(PostgresTx(conn))
                    if dead:
                        await _log(conn, dead)
                    return result, dead

    async def save_token(self, record: TokenRecord, expected: Credential | None) -> None:
        values = token_values(record)
        await self._save(TOKENS_INSERT, pg.TOKENS_INSERT_CHECKED, values, expected, redirects=False)

    async def save_code(self, code: AuthCode, expected: Credential | None) -> None:
        values = code_values(code)
        await self._save(INSERT_CODE, pg.INSERT_CODE_CHECKED, values, expected, redirects=True)

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        """One statement (IMPORT_TOKENS), so its own transaction."""

        async def work(tx: PostgresTx) -> tuple[int, list[bytes]]:
            return await tx.execute(pg.IMPORT_TOKENS, *import_params(records)), []

        return (await self.write(work, atomic=False))[0]

    async def _save(
        self,
        insert: str,
        checked: str,
        values: Sequence[object],
        expected: Credential | None,
        *,
        redirects: bool,
    ) -> None:
        """`values` inserted by `insert`, or with `expected` by `checked`, one statement (see
        postgres_schema._checked_insert) that inserts nothing once the client changed."""
        if expected is None:
            await one_statement(self, insert, *values)
            return
        client = client_params(expected, redirects=redirects)
        if not await one_statement(self, checked, *values, *client):
            raise ClientChanged()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the postgres store is not open")
        async with pool.acquire(timeout=self._command_timeout) as conn:
            yield conn


class PostgresStore(SQLStore):
    """`Store` on PostgreSQL; see the module docstring for its rules."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        statement_timeout_ms: int = 5000,
        connect_timeout: float = 5.0,
    ) -> None:
        pool = PostgresPool(dsn, pool_size, statement_timeout_ms, connect_timeout)
        super().__init__(pool)
        self.dsn = pool.dsn
        self.pool_size = pool.pool_size


# helpers ---------------------------------------------------------------------------------
async def _migrate(db: Connection) -> None:
    """Applies pending MIGRATIONS in one transaction under the advisory lock, so nodes
    opening the same schema at once take turns, and the later ones find nothing to do."""
    timeout = _MIGRATION_SECONDS
    async with db.transaction():
        await db.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
        schema = await db.fetchval("SELECT current_schema()")
        if schema is None:
            raise StoreUnavailable("no schema of the postgres search_path exists")
        await db.execute(pg.MIGRATION_LOCK, MIGRATION_LOCK_CLASS, schema, timeout=timeout)
        await db.execute(pg.SCHEMA_VERSION_TABLE)
        version = await db.fetchval(pg.SCHEMA_VERSION)
        if version is None:
            await db.execute("INSERT INTO edgeauth_schema (version) VALUES (0)")
            version = 0
        refuse_newer_schema(version, len(MIGRATIONS))
        for script in MIGRATIONS[version:]:
            await db.execute(script, timeout=timeout)
        if version < len(MIGRATIONS):
            await db.execute("UPDATE edgeauth_schema SET version = $1", len(MIGRATIONS))
            log.info("postgres schema %s migrated to version %d", schema, len(MIGRATIONS))


async def _log(db: Connection, dead: Sequence[bytes]) -> None:
    digests = [bytes(d) for d in dead]
    payloads = notify_payloads(digests)
    await db.execute(pg.LOG_REVOCATIONS, digests, time.time(), NOTIFY_CHANNEL, payloads)


@functools.lru_cache(maxsize=256)
def _dollars(sql: str) -> str:
    """sql.py's numbered parameters (`?1`) as PostgreSQL's (`$1`)."""
    return _NUMBERED.sub(r"$\1", sql)


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 3`."""
    return int(status.rpartition(" ")[2] or 0)
