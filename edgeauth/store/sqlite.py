"""The Store on one SQLite file (design §7): one aiosqlite connection, WAL, synchronous=FULL.

Invariants: every statement runs under one asyncio.Lock and every write inside BEGIN IMMEDIATE,
so races are settled by the database (one winner, across stores and processes; a save checked
against its client and a change to that client are serialized, the later one sees the
earlier); every digest a write kills, or whose cached copies it makes stale (a token's expiry
or scope, its client's client_id, its consumer's username or custom_id, with the consumer's
marker), is appended to the revocation log in that write's transaction, and announced only
after COMMIT; only StoreError subclasses leave this module.
The schema and fixed SQL live in sqlite_schema.py, SQLite's row mapping and list queries in
sqlite_rows.py, what both backends share in rows.py and rules.py; this module alone talks to
aiosqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import aiosqlite

from edgeauth.crypto import consumer_marker
from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store.base import (
    ConsumerPatch,
    CredentialPatch,
    NewCredential,
    Page,
    RevocationListener,
    TagFilter,
    TokenFilter,
)
from edgeauth.store.batch import GroupCommit
from edgeauth.store.rows import page, to_token, to_token_view
from edgeauth.store.rules import (
    REVOCATION_LOG_SECONDS,
    Listeners,
    client_change,
    expected_client,
    identity,
    identity_changed,
    patch_values,
    refusal,
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
from edgeauth.store.sqlite_rows import (
    CONSUMER_PATCH,
    CREDENTIAL_PATCH,
    credential_params,
    json_list,
    tags_match,
    to_consumer,
    to_credential,
    token_params,
)
from edgeauth.store.sqlite_schema import (
    CLIENTS,
    DROP_CODES_TO,
    FIND_LIVE_REFRESH,
    IMPORT_TOKENS,
    INSERT_CODE,
    INSERT_CONSUMER,
    INSERT_CREDENTIAL,
    LIVE_OF_CONSUMER,
    LIVE_OF_CREDENTIAL,
    LOG_REVOCATION,
    MIGRATIONS,
    REPLACE,
    REVOCATION_HEAD,
    REVOCATIONS_SINCE,
    REVOKE_BY_ID,
    REVOKE_CREDENTIAL,
    REVOKE_FAMILY,
    ROTATE,
    SWEEP_CODES,
    SWEEP_REVOCATIONS,
    SWEEP_TOKENS,
    TOKENS_INSERT,
    UPDATE_CREDENTIAL,
    UPSERT_CONSUMER,
    VIEWS_SELECT,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[object] | Mapping[str, object]
Work = Callable[[aiosqlite.Connection], Awaitable[tuple[T, Sequence[bytes]]]]
# A token waiting for its group commit: TOKENS_INSERT's parameters, and the client its request
# was checked against (None: saved unchecked).
Pending = tuple[dict[str, object], Credential | None]

# Tokens per transaction of an import: the gateway's own writes wait at most one chunk.
IMPORT_CHUNK = 5000


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


class SQLiteStore:
    """`Store` on one SQLite file; see the module docstring for its rules."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._listeners = Listeners()
        self._tokens = GroupCommit(self._insert_tokens, self._insert_token)

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

    def on_revoked(self, listener: RevocationListener) -> None:
        self._listeners.add(listener)

    async def ping(self) -> bool:
        try:
            await self._read("SELECT 1")
        except StoreError:
            return False
        return True

    async def diagnostics(self) -> dict[str, object]:
        """This connection's pragmas and the schema version (status pages, tests)."""
        names = ("journal_mode", "foreign_keys", "synchronous", "busy_timeout", "user_version")
        return {name: (await self._read(f"PRAGMA {name}"))[0][0] for name in names}

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
        params = (consumer_id, username, custom_id, json_list(tags), at)
        return to_consumer((await self._change(f"{INSERT_CONSUMER} RETURNING *", params))[0])

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        params = (str(uuid.uuid4()), username, custom_id, json_list(tags), int(time.time()))

        async def work(db: aiosqlite.Connection) -> tuple[Consumer, list[bytes]]:
            old = await _fetch(db, "SELECT * FROM consumers WHERE username = ?", (username,))
            consumer = to_consumer((await _fetch(db, UPSERT_CONSUMER, params))[0])
            stale = await _identity_changed(db, to_consumer(old[0]), consumer) if old else []
            return consumer, stale

        return await self._write(work)

    async def get_consumer(self, id_or_username: str) -> Consumer | None:
        rows = await self._read(
            "SELECT * FROM consumers WHERE id = :key OR username = :key"
            " ORDER BY id = :key DESC LIMIT 1",
            {"key": id_or_username},
        )
        return to_consumer(rows[0]) if rows else None

    async def list_consumers(
        self, *, tags: TagFilter | None = None, after: str | None = None, size: int = 100
    ) -> Page[Consumer]:
        where = Where()
        tags_where(where, "consumers.tags", tags, tags_match)
        select = "SELECT * FROM consumers"
        sql, params = page_query(select, where, "consumers", after, size, whole=True)
        return page(await self._read(sql, params), size, to_consumer)

    async def update_consumer(self, consumer_id: str, patch: ConsumerPatch) -> Consumer | None:
        values = patch_values(patch, CONSUMER_PATCH)
        select = "SELECT * FROM consumers WHERE id = ?"
        if not values:
            rows = await self._read(select, (consumer_id,))
            return to_consumer(rows[0]) if rows else None

        async def work(db: aiosqlite.Connection) -> tuple[Consumer | None, list[bytes]]:
            old = await _fetch(db, select, (consumer_id,))
            if not old:
                return None, []
            sql = update_query("consumers", values, "*")
            consumer = to_consumer((await _fetch(db, sql, (consumer_id, *values.values())))[0])
            return consumer, await _identity_changed(db, to_consumer(old[0]), consumer)

        return await self._write(work)

    async def delete_consumer(self, consumer_id: str) -> bool:
        async def work(db: aiosqlite.Connection) -> tuple[bool, list[bytes]]:
            dead = await _digests(db, LIVE_OF_CONSUMER, (consumer_id,))
            sql = "DELETE FROM consumers WHERE id = ? RETURNING id"
            if not await _fetch(db, sql, (consumer_id,)):
                return False, []
            return True, [*dead, consumer_marker(consumer_id)]

        return await self._write(work)

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        params = credential_params(new, *identity(new.id, new.created_at))
        return to_credential((await self._change(INSERT_CREDENTIAL, params))[0])

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """What a change does to the credential's tokens and codes: see rules.client_change."""

        async def work(db: aiosqlite.Connection) -> tuple[Credential, list[bytes]]:
            sql = "SELECT * FROM credentials WHERE client_id = ?"
            rows = await _fetch(db, sql, (new.client_id,))
            if not rows:
                params = credential_params(new, *identity(new.id, new.created_at))
                return to_credential((await _fetch(db, INSERT_CREDENTIAL, params))[0]), []
            old = to_credential(rows[0])
            params = credential_params(new, old.id, old.created_at)
            updated = to_credential((await _fetch(db, UPDATE_CREDENTIAL, params))[0])
            return updated, await _client_changed(db, old, updated)

        return await self._write(work)

    async def find_credential(self, client_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE client_id = ?", (client_id,))
        return to_credential(rows[0]) if rows else None

    async def get_credential(self, credential_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE id = ?", (credential_id,))
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
        return page(await self._read(sql, params), size, to_credential)

    async def update_credential(
        self, credential_id: str, patch: CredentialPatch
    ) -> Credential | None:
        """What a change does to the credential's tokens and codes: see rules.client_change."""
        values = patch_values(patch, CREDENTIAL_PATCH)

        async def work(db: aiosqlite.Connection) -> tuple[Credential | None, list[bytes]]:
            rows = await _fetch(db, "SELECT * FROM credentials WHERE id = ?", (credential_id,))
            if not rows:
                return None, []
            old = to_credential(rows[0])
            if values:
                sql = update_query("credentials", values, "*")
                rows = await _fetch(db, sql, (credential_id, *values.values()))
            updated = to_credential(rows[0])
            return updated, await _client_changed(db, old, updated)

        return await self._write(work)

    async def delete_credential(self, credential_id: str) -> bool:
        async def work(db: aiosqlite.Connection) -> tuple[bool, list[bytes]]:
            dead = await _digests(db, LIVE_OF_CREDENTIAL, (credential_id,))
            sql = "DELETE FROM credentials WHERE id = ? RETURNING id"
            return bool(await _fetch(db, sql, (credential_id,))), dead

        return await self._write(work)

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord, issued_to: Credential | None = None) -> None:
        expected = expected_client(record.credential_id, issued_to)
        await self._tokens.add((token_params(record), expected))

    async def _insert_tokens(self, rows: list[Pending]) -> list[ClientChanged | None]:
        """One transaction for a whole group of issued tokens (see store/batch.py): the
        credentials they expect are read once, and a token whose client changed since its
        request was checked is left out and refused alone."""

        async def work(db: aiosqlite.Connection) -> tuple[list[ClientChanged | None], list[bytes]]:
            clients = await _clients(db, [client.id for _, client in rows if client is not None])
            outcomes = [refusal(clients, client, redirects=False) for _, client in rows]
            kept = [params for (params, _), no in zip(rows, outcomes, strict=True) if no is None]
            async with db.executemany(TOKENS_INSERT, kept):
                return outcomes, []

        return await self._write(work)

    async def _insert_token(self, row: Pending) -> None:
        [refused] = await self._insert_tokens([row])
        if refused is not None:
            raise refused

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        """IMPORT_CHUNK rows per transaction; nothing is announced (no cache holds a token
        that was not stored yet)."""
        inserted = 0
        for start in range(0, len(records), IMPORT_CHUNK):
            chunk = [token_params(record) for record in records[start : start + IMPORT_CHUNK]]
            inserted += await self._write(_imported(chunk))
        return inserted

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        rows = await self._read(f"{VIEWS_SELECT} WHERE t.access_digest = ?", (access_digest,))
        return to_token_view(rows[0]) if rows else None

    async def get_token(self, token_id: str) -> TokenView | None:
        rows = await self._read(f"{VIEWS_SELECT} WHERE t.id = ?", (token_id,))
        return to_token_view(rows[0]) if rows else None

    async def list_tokens(
        self, which: TokenFilter, now: float, *, after: str | None = None, size: int = 100
    ) -> Page[TokenView]:
        """Active means not revoked and the access token not expired at `now`."""
        where = tokens_where(which, now, "t", Where())
        sql, params = page_query(VIEWS_SELECT, where, "t", after, size, whole=False)
        return page(await self._read(sql, params), size, to_token_view)

    async def update_token(
        self, token_id: str, *, expires_at: float | bool | None = False, scope: str | None = None
    ) -> TokenView | None:
        """Announces (and logs) the access digest whenever something was set, revoked token
        or not, so that every cache re-reads it; a call changing nothing announces nothing."""
        values = token_changes(expires_at, scope)
        if not values:
            return await self.get_token(token_id)

        async def work(db: aiosqlite.Connection) -> tuple[TokenView | None, list[bytes]]:
            sql = update_query("tokens", values, "access_digest")
            changed = await _digests(db, sql, (token_id, *values.values()))
            if not changed:
                return None, []
            rows = await _fetch(db, f"{VIEWS_SELECT} WHERE t.id = ?", (token_id,))
            return to_token_view(rows[0]), changed

        return await self._write(work)

    async def find_refresh(self, refresh_digest: bytes) -> TokenRecord | None:
        rows = await self._read("SELECT * FROM tokens WHERE refresh_digest = ?", (refresh_digest,))
        return to_token(rows[0]) if rows else None

    async def rotate_refresh(
        self, refresh_digest: bytes, new: TokenRecord, now: float
    ) -> TokenRecord | None:
        """Returns the retired row as it is after retirement (revoked_at and
        refresh_used_at = now), or None when no live row holds `refresh_digest`."""

        async def work(db: aiosqlite.Connection) -> tuple[TokenRecord | None, list[bytes]]:
            rows = await _fetch(db, ROTATE, {"digest": refresh_digest, "now": now})
            if not rows:
                return None, []
            await _exec(db, TOKENS_INSERT, token_params(new))
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
        async def work(db: aiosqlite.Connection) -> tuple[TokenRecord | None, list[bytes]]:
            live = await _fetch(db, FIND_LIVE_REFRESH, {"digest": refresh_digest, "now": now})
            if not live:
                return None, []
            params = {"access": access_digest, "prefix": prefix, "expires": expires_at}
            rows = await _fetch(db, REPLACE, {**params, "now": now, "id": live[0]["id"]})
            return to_token(rows[0]), [bytes(live[0]["access_digest"])]

        return await self._write(work)

    async def revoke_family(self, family_id: str, now: float) -> int:
        return len(await self._revoke(REVOKE_FAMILY, (now, family_id)))

    async def revoke_token(self, token_id: str, now: float) -> bool:
        return bool(await self._revoke(REVOKE_BY_ID, (now, token_id)))

    async def revoke_tokens(self, which: TokenFilter, now: float) -> int:
        """Revokes the unrevoked rows matching `which`, expired ones included unless
        `which.active` is True (an expired access token may still hold a live refresh)."""
        return len(await self._revoke(*revoke_query(which, now)))

    # revocation log --------------------------------------------------------------------
    async def revocation_head(self) -> int:
        """The newest seq ever logged: it does not go back when the sweep prunes the log."""
        return int((await self._read(REVOCATION_HEAD))[0][0])

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        if limit <= 0:
            return []
        rows = await self._read(REVOCATIONS_SINCE, (int(seq), int(limit)))
        return [(int(row[0]), bytes(row[1])) for row in rows]

    # authorization codes ---------------------------------------------------------------
    async def save_code(self, code: AuthCode, issued_to: Credential | None = None) -> None:
        expected = expected_client(code.credential_id, issued_to)

        async def work(db: aiosqlite.Connection) -> tuple[None, list[bytes]]:
            clients = await _clients(db, [expected.id] if expected is not None else [])
            refused = refusal(clients, expected, redirects=True)
            if refused is not None:
                raise refused
            await _exec(db, INSERT_CODE, asdict(code))
            return None, []

        await self._write(work)

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        rows = await self._change("DELETE FROM codes WHERE digest = ? RETURNING *", (digest,))
        return unexpired_code(rows, now)

    # housekeeping ----------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        """Also prunes revocation-log entries older than REVOCATION_LOG_SECONDS (counted in
        the rows deleted)."""

        async def work(db: aiosqlite.Connection) -> tuple[int, list[bytes]]:
            codes = await _exec(db, SWEEP_CODES, (now,))
            tokens = await _exec(db, SWEEP_TOKENS, {"cutoff": now - grace_seconds})
            log_rows = await _exec(db, SWEEP_REVOCATIONS, (now - REVOCATION_LOG_SECONDS,))
            return codes + tokens + log_rows, []

        return await self._write(work)

    # plumbing --------------------------------------------------------------------------
    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("the sqlite store is not open")
        return self._db

    async def _read(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        with _translated():
            async with self._lock:
                return await _fetch(self._connection(), sql, params)

    async def _change(self, sql: str, params: Params) -> list[sqlite3.Row]:
        """One statement in its own write transaction; returns its RETURNING rows."""

        async def work(db: aiosqlite.Connection) -> tuple[list[sqlite3.Row], list[bytes]]:
            return await _fetch(db, sql, params), []

        return await self._write(work)

    async def _revoke(self, sql: str, params: Params) -> list[bytes]:
        async def work(db: aiosqlite.Connection) -> tuple[list[bytes], list[bytes]]:
            dead = await _digests(db, sql, params)
            return dead, dead

        return await self._write(work)

    async def _write(self, work: Work[T]) -> T:
        """Runs `work` in one BEGIN IMMEDIATE transaction that also logs the digests it
        killed or made stale, then announces them. Shielded: a cancelled caller cannot part a
        commit from its announcement."""
        return await asyncio.shield(self._write_now(work))

    async def _write_now(self, work: Work[T]) -> T:
        async def logged(db: aiosqlite.Connection) -> tuple[T, Sequence[bytes]]:
            result, dead = await work(db)
            if dead:
                at = time.time()
                async with db.executemany(LOG_REVOCATION, [(d, at) for d in dead]):
                    pass
            return result, dead

        with _translated():
            async with self._lock:
                result, dead = await _in_transaction(self._connection(), logged)
        self._listeners.announce(dead)
        return result


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
    await _exec(db, "BEGIN IMMEDIATE")
    try:
        result = await work(db)
        await _exec(db, "COMMIT")
    except BaseException:
        try:
            await _exec(db, "ROLLBACK")
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
    if version > len(MIGRATIONS):
        raise StoreUnavailable(
            f"the database schema (version {version}) is newer than this edgeauth "
            f"(version {len(MIGRATIONS)})"
        )
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
    async with db.execute(sql, params) as cursor:
        return cursor.rowcount


async def _fetch(db: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _digests(db: aiosqlite.Connection, sql: str, params: Params) -> list[bytes]:
    return [bytes(row[0]) for row in await _fetch(db, sql, params)]


def _imported(rows: list[dict[str, object]]) -> Work[int]:
    """The work of inserting one chunk of an import; its result is how many rows landed."""

    async def work(db: aiosqlite.Connection) -> tuple[int, list[bytes]]:
        async with db.executemany(IMPORT_TOKENS, rows) as cursor:
            return cursor.rowcount, []

    return work


async def _clients(db: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, Credential]:
    """The credentials among `ids` that exist now, by id."""
    if not ids:
        return {}
    rows = await _fetch(db, CLIENTS, (json_list(tuple(ids)),))
    return {row["id"]: to_credential(row) for row in rows}


async def _identity_changed(db: aiosqlite.Connection, old: Consumer, new: Consumer) -> list[bytes]:
    """The digests and marker to log and announce when rules.identity_changed."""
    if not identity_changed(old, new):
        return []
    return [*await _digests(db, LIVE_OF_CONSUMER, (old.id,)), consumer_marker(old.id)]


async def _client_changed(
    db: aiosqlite.Connection, old: Credential, new: Credential
) -> list[bytes]:
    """Carries out rules.client_change; returns the digests to log and announce."""
    change = client_change(old, new)
    if change.void:
        return await _revoke_credential(db, old.id)
    if change.dropped:
        params = (old.id, json_list(change.dropped), change.default_dropped)
        await _exec(db, DROP_CODES_TO, params)
    return await _digests(db, LIVE_OF_CREDENTIAL, (old.id,)) if change.renamed else []


async def _revoke_credential(db: aiosqlite.Connection, credential_id: str) -> list[bytes]:
    """Revokes a credential's live tokens and drops its codes (the client changed)."""
    dead = await _digests(db, REVOKE_CREDENTIAL, (time.time(), credential_id))
    await _exec(db, "DELETE FROM codes WHERE credential_id = ?", (credential_id,))
    return dead
