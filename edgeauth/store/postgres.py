"""The Store on PostgreSQL (design §7) through an asyncpg pool, for several nodes on one database.

Invariants: every write is one READ COMMITTED transaction (a single statement or an explicit
one), and races are settled by row locks (a waiting UPDATE, DELETE or FOR UPDATE re-checks its
WHERE on the winner's row, so exactly one of concurrent callers wins, on any node; a save
checked against its client holds the credential row FOR SHARE, every change to a credential
takes it FOR UPDATE first, so the later of the two sees the earlier); every digest a write
kills, or whose cached copies it makes stale (a token's expiry or scope, its client's
client_id, its consumer's username or custom_id, with the consumer's marker), is appended to
the revocation log and NOTIFYed in that write's transaction, and announced to `on_revoked`
listeners only after COMMIT; only StoreError subclasses leave this module. A transaction that
loses a deadlock or serialization check is retried (up to three attempts in all).

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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]

from edgeauth.crypto import consumer_marker
from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store import postgres_schema as q
from edgeauth.store.base import (
    ConsumerPatch,
    CredentialPatch,
    NewCredential,
    Page,
    RevocationListener,
    TagFilter,
    TokenFilter,
)
from edgeauth.store.core import Listeners
from edgeauth.store.postgres_schema import (
    MIGRATION_LOCK_CLASS,
    MIGRATIONS,
    Row,
    client_params,
    code_params,
    credential_params,
    import_params,
    tags_match,
    to_consumer,
    to_credential,
    token_params,
    update_params,
)
from edgeauth.store.rows import INT64, page, to_token, to_token_view
from edgeauth.store.rules import (
    CONSUMER_PATCH,
    CREDENTIAL_PATCH,
    REVOCATION_LOG_SECONDS,
    client_change,
    expected_client,
    identity,
    identity_changed,
    patch_values,
    token_changes,
    unexpired_code,
)
from edgeauth.store.sql import (
    Where,
    page_query,
    revoke_query,
    tags_where,
    tokens_where,
    update_query,
)

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
NOTIFY_CHANNEL = "edgeauth_revocations"
DIGESTS_PER_NOTIFICATION = 100
_ATTEMPTS = 3
_NUMBERED = re.compile(r"\?(\d+)")
_MIGRATION_SECONDS = 600.0
IMPORT_CHUNK = 5000  # tokens per transaction of an import


class Connection(Protocol):
    """The part of asyncpg.Connection this module uses."""

    async def fetch(self, query: str, *args: object) -> list[Row]: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...

    async def execute(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str: ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[object]: ...


Work = Callable[[Connection], Awaitable[tuple[T, Sequence[bytes]]]]


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
    except asyncpg.TransactionRollbackError as exc:  # a deadlock: _write_now retries
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


class PostgresStore:
    """`Store` on PostgreSQL; see the module docstring for its rules."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        statement_timeout_ms: int = 5000,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.pool_size = max(1, int(pool_size))
        self._statement_timeout_ms = int(statement_timeout_ms)
        self._connect_timeout = float(connect_timeout)
        # client-side bound of one statement, and of the wait for a pooled connection
        self._command_timeout = self._statement_timeout_ms / 1000 + self._connect_timeout
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._listeners = Listeners()

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

    def on_revoked(self, listener: RevocationListener) -> None:
        self._listeners.add(listener)

    async def ping(self) -> bool:
        try:
            await self._read("SELECT 1")
        except StoreError:
            return False
        return True

    async def diagnostics(self) -> dict[str, object]:
        """The session settings in effect, the schema and its version, the pool's sizes."""
        rows = await self._read(
            "SELECT current_setting('statement_timeout') AS statement_timeout,"
            " current_setting('application_name') AS application_name,"
            " current_schema() AS schema, (SELECT version FROM edgeauth_schema) AS version"
        )
        pool, settings = self._pool, dict(rows[0])
        if pool is not None:
            settings.update(pool_max_size=pool.get_max_size(), pool_size=pool.get_size())
        return settings

    # consumers -----------------------------------------------------------------------
    async def create_consumer(
        self,
        username: str | None,
        custom_id: str | None,
        tags: tuple[str, ...] = (),
        *,
        id: str | None = None,
        created_at: int | None = None,
    ) -> Consumer:
        consumer_id, at = identity(id, created_at)
        params = (consumer_id, username, custom_id, list(tags), at)
        rows = await self._change(f"{q.INSERT_CONSUMER} RETURNING *", *params)
        return to_consumer(rows[0])

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        """Upserts of one username take turns (an advisory lock): ON CONFLICT settles only
        the username race, and nodes seeding at once would otherwise clash on custom_id."""
        params = (str(uuid.uuid4()), username, custom_id, list(tags), int(time.time()))

        async def work(db: Connection) -> tuple[Consumer, list[bytes]]:
            await db.execute(q.LOCK_USERNAME, q.SEED_LOCK_CLASS, username)
            old = await db.fetch(q.LOCK_CONSUMER_NAMED, username)
            consumer = to_consumer((await db.fetch(q.UPSERT_CONSUMER, *params))[0])
            stale = await _identity_changed(db, to_consumer(old[0]), consumer) if old else []
            return consumer, stale

        return await self._write(work)

    async def get_consumer(self, id_or_username: str) -> Consumer | None:
        rows = await self._read(q.GET_CONSUMER, id_or_username)
        return to_consumer(rows[0]) if rows else None

    async def list_consumers(
        self, *, tags: TagFilter | None = None, after: str | None = None, size: int = 100
    ) -> Page[Consumer]:
        where = Where()
        tags_where(where, "consumers.tags", tags, tags_match)
        select = "SELECT * FROM consumers"
        sql, params = page_query(select, where, "consumers", after, size, whole=True)
        return page(await self._read(sql, *params), size, to_consumer)

    async def update_consumer(self, consumer_id: str, patch: ConsumerPatch) -> Consumer | None:
        values = patch_values(patch, CONSUMER_PATCH, list)
        if not values:
            rows = await self._read("SELECT * FROM consumers WHERE id = $1", consumer_id)
            return to_consumer(rows[0]) if rows else None

        async def work(db: Connection) -> tuple[Consumer | None, list[bytes]]:
            old = await db.fetch(q.LOCK_CONSUMER, consumer_id)
            if not old:
                return None, []
            sql = _dollars(update_query("consumers", values, "*"))
            consumer = to_consumer((await db.fetch(sql, consumer_id, *values.values()))[0])
            return consumer, await _identity_changed(db, to_consumer(old[0]), consumer)

        return await self._write(work)

    async def delete_consumer(self, consumer_id: str) -> bool:
        async def work(db: Connection) -> tuple[bool, list[bytes]]:
            if not await db.fetch(q.LOCK_CONSUMER, consumer_id):
                return False, []
            await db.execute(q.LOCK_CREDENTIALS_OF, consumer_id)
            dead = await _digests(db, q.LIVE_OF_CONSUMER, consumer_id)
            await db.execute("DELETE FROM consumers WHERE id = $1", consumer_id)
            return True, [*dead, consumer_marker(consumer_id)]

        return await self._write(work)

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        params = credential_params(new, *identity(new.id, new.created_at))
        return to_credential((await self._change(q.INSERT_CREDENTIAL, *params))[0])

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """What a change does to the credential's tokens and codes: see rules.client_change."""

        async def work(db: Connection) -> tuple[Credential, list[bytes]]:
            rows = await db.fetch(q.LOCK_CLIENT, new.client_id)
            if not rows:
                params = credential_params(new, *identity(new.id, new.created_at))
                created = await db.fetch(q.SEED_CREDENTIAL, *params)
                if created:
                    return to_credential(created[0]), []
                rows = await db.fetch(q.LOCK_CLIENT, new.client_id)  # lost a race
                if not rows:
                    raise Conflict(
                        "credentials", "client_id", "the client_id changed hands during the upsert"
                    )
            old = to_credential(rows[0])
            rows = await db.fetch(q.UPDATE_CREDENTIAL, *update_params(new, old.id))
            updated = to_credential(rows[0])
            return updated, await _client_changed(db, old, updated)

        return await self._write(work)

    async def find_credential(self, client_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE client_id = $1", client_id)
        return to_credential(rows[0]) if rows else None

    async def get_credential(self, credential_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE id = $1", credential_id)
        return to_credential(rows[0]) if rows else None

    async def list_credentials(
        self,
        *,
        consumer_id: str | None = None,
        tags: TagFilter | None = None,
        after: str | None = None,
        size: int = 100,
    ) -> Page[Credential]:
        where = Where()
        if consumer_id is not None:
            where.add("credentials.consumer_id = ?", consumer_id)
        tags_where(where, "credentials.tags", tags, tags_match)
        select = "SELECT * FROM credentials"
        sql, params = page_query(select, where, "credentials", after, size, whole=True)
        return page(await self._read(sql, *params), size, to_credential)

    async def update_credential(
        self, credential_id: str, patch: CredentialPatch
    ) -> Credential | None:
        """What a change does to the credential's tokens and codes: see rules.client_change."""
        values = patch_values(patch, CREDENTIAL_PATCH, list)

        async def work(db: Connection) -> tuple[Credential | None, list[bytes]]:
            rows = await db.fetch(q.LOCK_CREDENTIAL, credential_id)
            if not rows:
                return None, []
            old = to_credential(rows[0])
            if values:
                sql = update_query("credentials", values, "*")
                rows = await db.fetch(_dollars(sql), credential_id, *values.values())
            updated = to_credential(rows[0])
            return updated, await _client_changed(db, old, updated)

        return await self._write(work)

    async def delete_credential(self, credential_id: str) -> bool:
        async def work(db: Connection) -> tuple[bool, list[bytes]]:
            if not await db.fetch(q.LOCK_CREDENTIAL, credential_id):
                return False, []
            dead = await _digests(db, q.LIVE_OF_CREDENTIAL, credential_id)
            await db.execute("DELETE FROM credentials WHERE id = $1", credential_id)
            return True, dead

        return await self._write(work)

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord, issued_to: Credential | None = None) -> None:
        """With `issued_to`, one statement: see postgres_schema._checked_insert."""
        expected = expected_client(record.credential_id, issued_to)
        if expected is None:
            await self._change(q.TOKENS_INSERT, *token_params(record))
            return
        checked = client_params(expected, redirects=False)
        if not await self._change(q.TOKENS_INSERT_CHECKED, *token_params(record), *checked):
            raise ClientChanged()

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        """IMPORT_CHUNK rows per statement, each its own transaction; nothing is announced
        (no cache holds a token that was not stored yet)."""
        inserted = 0
        for start in range(0, len(records), IMPORT_CHUNK):
            columns = import_params(records[start : start + IMPORT_CHUNK])
            inserted += await self._write(_imported(columns), atomic=False)
        return inserted

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        sql = f"{q.VIEWS_SELECT} WHERE t.access_digest = $1"
        rows = await self._read(sql, access_digest)
        return to_token_view(rows[0]) if rows else None

    async def get_token(self, token_id: str) -> TokenView | None:
        rows = await self._read(f"{q.VIEWS_SELECT} WHERE t.id = $1", token_id)
        return to_token_view(rows[0]) if rows else None

    async def list_tokens(
        self, which: TokenFilter, now: float, *, after: str | None = None, size: int = 100
    ) -> Page[TokenView]:
        """Active means not revoked and the access token not expired at `now`."""
        where = tokens_where(which, now, "t", Where())
        sql, params = page_query(q.VIEWS_SELECT, where, "t", after, size, whole=False)
        return page(await self._read(sql, *params), size, to_token_view)

    async def update_token(
        self, token_id: str, *, expires_at: float | bool | None = False, scope: str | None = None
    ) -> TokenView | None:
        """Announces (and logs) the access digest whenever something was set, revoked token
        or not, so that every cache re-reads it; a call changing nothing announces nothing."""
        values = token_changes(expires_at, scope)
        if not values:
            return await self.get_token(token_id)

        async def work(db: Connection) -> tuple[TokenView | None, list[bytes]]:
            sql = update_query("tokens", values, "access_digest")
            changed = await _digests(db, _dollars(sql), token_id, *values.values())
            if not changed:
                return None, []
            rows = await db.fetch(f"{q.VIEWS_SELECT} WHERE t.id = $1", token_id)
            return to_token_view(rows[0]), changed

        return await self._write(work)

    async def find_refresh(self, refresh_digest: bytes) -> TokenRecord | None:
        sql = "SELECT * FROM tokens WHERE refresh_digest = $1"
        rows = await self._read(sql, refresh_digest)
        return to_token(rows[0]) if rows else None

    async def rotate_refresh(
        self, refresh_digest: bytes, new: TokenRecord, now: float
    ) -> TokenRecord | None:
        """Returns the retired row as it is after retirement (revoked_at and
        refresh_used_at = now), or None when no live row holds `refresh_digest`."""

        async def work(db: Connection) -> tuple[TokenRecord | None, list[bytes]]:
            rows = await db.fetch(q.ROTATE, refresh_digest, float(now))
            if not rows:
                return None, []
            await db.execute(q.TOKENS_INSERT, *token_params(new))
            old = to_token(rows[0])
            return old, [old.access_digest]

        return await self._write(work)

    async def replace_access(
        self,
        refresh_digest: bytes,
        access_digest: bytes,
        prefix: str,
        expires_at: float | None,
        now: float,
    ) -> TokenRecord | None:
        async def work(db: Connection) -> tuple[TokenRecord | None, list[bytes]]:
            live = await db.fetch(q.FIND_LIVE_REFRESH, refresh_digest, float(now))
            if not live:
                return None, []
            params = (live[0]["id"], access_digest, prefix, expires_at, float(now))
            rows = await db.fetch(q.REPLACE, *params)
            return to_token(rows[0]), [bytes(live[0]["access_digest"])]

        return await self._write(work)

    async def revoke_family(self, family_id: str, now: float) -> int:
        return len(await self._revoke(q.REVOKE_FAMILY, float(now), family_id))

    async def revoke_token(self, token_id: str, now: float) -> bool:
        return bool(await self._revoke(q.REVOKE_BY_ID, float(now), token_id))

    async def revoke_tokens(self, which: TokenFilter, now: float) -> int:
        """Revokes the unrevoked rows matching `which`, expired ones included unless
        `which.active` is True (an expired access token may still hold a live refresh)."""
        sql, params = revoke_query(which, now)
        return len(await self._revoke(sql, *params))

    # revocation log --------------------------------------------------------------------
    async def revocation_head(self) -> int:
        """The newest seq ever logged: it does not go back when the sweep prunes the log."""
        return int((await self._read(q.REVOCATION_HEAD))[0]["seq"])

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """Safe against commits out of seq order: log writers commit in seq order (see the
        module docstring), so a seq is never returned before a smaller one still to come."""
        if limit <= 0:
            return []
        seq = max(-INT64, min(int(seq), INT64))
        rows = await self._read(q.REVOCATIONS_SINCE, seq, min(int(limit), INT64))
        return [(int(row["seq"]), bytes(row["access_digest"])) for row in rows]

    # authorization codes ---------------------------------------------------------------
    async def save_code(self, code: AuthCode, issued_to: Credential | None = None) -> None:
        """With `issued_to`, one statement: see postgres_schema._checked_insert."""
        expected = expected_client(code.credential_id, issued_to)
        if expected is None:
            await self._change(q.INSERT_CODE, *code_params(code))
            return
        checked = client_params(expected, redirects=True)
        if not await self._change(q.INSERT_CODE_CHECKED, *code_params(code), *checked):
            raise ClientChanged()

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        return unexpired_code(await self._change(q.TAKE_CODE, digest), now)

    # housekeeping ----------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        """Also prunes revocation-log entries older than REVOCATION_LOG_SECONDS (counted in
        the rows deleted)."""

        async def work(db: Connection) -> tuple[int, list[bytes]]:
            codes = await db.execute(q.SWEEP_CODES, float(now))
            tokens = await db.execute(q.SWEEP_TOKENS, float(now - grace_seconds))
            cutoff = float(now - REVOCATION_LOG_SECONDS)
            log_rows = await db.execute(q.SWEEP_REVOCATIONS, cutoff)
            return sum(_count(status) for status in (codes, tokens, log_rows)), []

        return await self._write(work)

    # plumbing --------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the postgres store is not open")
        async with pool.acquire(timeout=self._command_timeout) as conn:
            yield conn

    async def _read(self, sql: str, *params: object) -> list[Row]:
        with _translated():
            async with self._connection() as db:
                return await db.fetch(_dollars(sql), *params)

    async def _change(self, sql: str, *params: object) -> list[Row]:
        """One statement, committed on its own; returns its RETURNING rows."""

        async def work(db: Connection) -> tuple[list[Row], list[bytes]]:
            return await db.fetch(sql, *params), []

        return await self._write(work, atomic=False)

    async def _revoke(self, sql: str, *params: object) -> list[bytes]:
        async def work(db: Connection) -> tuple[list[bytes], list[bytes]]:
            dead = await _digests(db, _dollars(sql), *params)
            return dead, dead

        return await self._write(work)

    async def _write(self, work: Work[T], *, atomic: bool = True) -> T:
        """Runs `work` (in one transaction if `atomic`) that also logs and NOTIFYs the
        digests it killed or made stale, then announces them. A cancelled caller waits for the
        commit and its announcement before its cancellation proceeds: the two are never
        parted, and what the caller does next sees the write."""
        task = asyncio.ensure_future(self._write_now(work, atomic))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the caller is gone
            raise

    async def _write_now(self, work: Work[T], atomic: bool) -> T:
        """Retries a transaction that lost a deadlock or serialization check."""
        attempt = 1
        while True:
            try:
                result, dead = await self._attempt(work, atomic)
            except StoreUnavailable as exc:
                lost = isinstance(exc.__cause__, asyncpg.TransactionRollbackError)
                if not lost or attempt >= _ATTEMPTS:
                    raise
                log.warning("postgres store: %s; retrying", str(exc.__cause__).partition("\n")[0])
                attempt += 1
                continue
            self._listeners.announce(dead)
            return result

    async def _attempt(self, work: Work[T], atomic: bool) -> tuple[T, Sequence[bytes]]:
        with _translated():
            async with self._connection() as db:
                if not atomic:
                    return await work(db)
                async with db.transaction():
                    result, dead = await work(db)
                    if dead:
                        await _log(db, dead)
                    return result, dead


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
        await db.execute(q.MIGRATION_LOCK, MIGRATION_LOCK_CLASS, schema, timeout=timeout)
        await db.execute(q.SCHEMA_VERSION_TABLE)
        version = await db.fetchval(q.SCHEMA_VERSION)
        if version is None:
            await db.execute("INSERT INTO edgeauth_schema (version) VALUES (0)")
            version = 0
        if version > len(MIGRATIONS):
            raise StoreUnavailable(
                f"the database schema (version {version}) is newer than this edgeauth "
                f"(version {len(MIGRATIONS)})"
            )
        for script in MIGRATIONS[version:]:
            await db.execute(script, timeout=timeout)
        if version < len(MIGRATIONS):
            await db.execute("UPDATE edgeauth_schema SET version = $1", len(MIGRATIONS))
            log.info("postgres schema %s migrated to version %d", schema, len(MIGRATIONS))


async def _log(db: Connection, dead: Sequence[bytes]) -> None:
    digests = [bytes(d) for d in dead]
    payloads = notify_payloads(digests)
    await db.execute(q.LOG_REVOCATIONS, digests, time.time(), NOTIFY_CHANNEL, payloads)


async def _digests(db: Connection, sql: str, *params: object) -> list[bytes]:
    return [bytes(row["access_digest"]) for row in await db.fetch(sql, *params)]


async def _identity_changed(db: Connection, old: Consumer, new: Consumer) -> list[bytes]:
    """The digests and marker to log and announce when rules.identity_changed. The
    credentials are locked first, so that a token being saved for one of them either is
    read here or commits after this change."""
    if not identity_changed(old, new):
        return []
    await db.execute(q.LOCK_CREDENTIALS_OF, old.id)
    return [*await _digests(db, q.LIVE_OF_CONSUMER, old.id), consumer_marker(old.id)]


async def _client_changed(db: Connection, old: Credential, new: Credential) -> list[bytes]:
    """Carries out rules.client_change (the credential's row locked FOR UPDATE); returns the
    digests to log and announce."""
    change = client_change(old, new)
    if change.void:
        return await _revoke_credential(db, old.id)
    if change.dropped:
        await db.execute(q.DROP_CODES_TO, old.id, list(change.dropped), change.default_dropped)
    return await _digests(db, q.LIVE_OF_CREDENTIAL, old.id) if change.renamed else []


async def _revoke_credential(db: Connection, credential_id: str) -> list[bytes]:
    """Revokes a credential's live tokens and drops its codes (the client changed)."""
    dead = await _digests(db, q.REVOKE_CREDENTIAL, time.time(), credential_id)
    await db.execute("DELETE FROM codes WHERE credential_id = $1", credential_id)
    return dead


def _imported(columns: list[list[object]]) -> Work[int]:
    """The work of inserting one chunk of an import; its result is how many rows landed."""

    async def work(db: Connection) -> tuple[int, list[bytes]]:
        return _count(await db.execute(q.IMPORT_TOKENS, *columns)), []

    return work


@functools.lru_cache(maxsize=256)
def _dollars(sql: str) -> str:
    """sql.py's numbered parameters (`?1`) as PostgreSQL's (`$1`)."""
    return _NUMBERED.sub(r"$\1", sql)


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 3`."""
    return int(status.rpartition(" ")[2] or 0)
