"""The Store on one SQLite file (design §7): one aiosqlite connection, WAL, synchronous=FULL.

Invariants: every statement runs under one asyncio.Lock and every write inside BEGIN IMMEDIATE,
so races are settled by the database (one winner, across stores and processes); revoked digests
are announced only after COMMIT; only StoreError subclasses leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from edgeauth.errors import Conflict, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store.base import NewCredential, RevocationListener

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[object] | Mapping[str, object]
Work = Callable[[aiosqlite.Connection], Awaitable[tuple[T, Sequence[bytes]]]]

_V1 = """
CREATE TABLE consumers (
    id TEXT PRIMARY KEY,
    username TEXT UNIQUE,
    custom_id TEXT UNIQUE,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    client_type TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    tags TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE INDEX credentials_consumer_id ON credentials (consumer_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    access_digest BLOB NOT NULL UNIQUE CHECK (length(access_digest) = 32),
    refresh_digest BLOB UNIQUE CHECK (refresh_digest IS NULL OR length(refresh_digest) = 32),
    prefix TEXT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    family_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    refresh_expires_at REAL,
    revoked_at REAL,
    refresh_used_at REAL
);
CREATE INDEX tokens_credential_id ON tokens (credential_id);
CREATE INDEX tokens_authenticated_userid ON tokens (authenticated_userid);
CREATE INDEX tokens_service ON tokens (service);
CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE TABLE codes (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX codes_credential_id ON codes (credential_id);
"""

_CONSUMER_FIELDS = tuple(field.name for field in fields(Consumer))
_CREDENTIAL_FIELDS = tuple(field.name for field in fields(Credential))
_TOKEN_FIELDS = tuple(field.name for field in fields(TokenRecord))
_CODE_FIELDS = tuple(field.name for field in fields(AuthCode))

# Forward-only: append, never edit. PRAGMA user_version counts those applied.
MIGRATIONS: tuple[str, ...] = (_V1,)

_INSERT_CONSUMER = """INSERT INTO consumers (id, username, custom_id, tags, created_at)
VALUES (?, ?, ?, ?, ?)"""
_UPSERT_CONSUMER = f"""{_INSERT_CONSUMER} ON CONFLICT (username)
DO UPDATE SET custom_id = excluded.custom_id, tags = excluded.tags RETURNING *"""
_INSERT_CREDENTIAL = """INSERT INTO credentials (id, consumer_id, name, client_id, secret_hash,
    redirect_uris, client_type, tags, created_at)
VALUES (:id, :consumer_id, :name, :client_id, :secret_hash, :redirect_uris, :client_type, :tags,
    :created_at) RETURNING *"""
_UPDATE_CREDENTIAL = """UPDATE credentials SET consumer_id = :consumer_id, name = :name,
    secret_hash = :secret_hash, redirect_uris = :redirect_uris, client_type = :client_type,
    tags = :tags
WHERE id = :id RETURNING *"""
_TOKENS_INSERT = """INSERT INTO tokens (id, access_digest, refresh_digest, prefix, credential_id,
    service, authenticated_userid, scope, family_id, created_at, expires_at, refresh_expires_at,
    revoked_at, refresh_used_at)
VALUES (:id, :access_digest, :refresh_digest, :prefix, :credential_id, :service,
    :authenticated_userid, :scope, :family_id, :created_at, :expires_at, :refresh_expires_at,
    :revoked_at, :refresh_used_at)"""
_TOKENS_JOINED = """SELECT t.*, c.client_id, c.consumer_id, k.username, k.custom_id
FROM tokens t JOIN credentials c ON c.id = t.credential_id JOIN consumers k ON k.id = c.consumer_id
WHERE t.access_digest = ?"""
# Both: the row holding a live refresh token (not revoked, not rotated away, not expired).
_ROTATE = """UPDATE tokens SET revoked_at = :now, refresh_used_at = :now
WHERE refresh_digest = :digest AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > :now)
RETURNING *"""
_FIND_LIVE_REFRESH = """SELECT id, access_digest FROM tokens
WHERE refresh_digest = :digest AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > :now)"""
_REPLACE = """UPDATE tokens SET access_digest = :access, prefix = :prefix, expires_at = :expires,
    created_at = :now
WHERE id = :id RETURNING *"""
_LIVE_OF_CONSUMER = """SELECT t.access_digest FROM tokens t
JOIN credentials c ON c.id = t.credential_id WHERE c.consumer_id = ? AND t.revoked_at IS NULL"""
_REVOKE_CREDENTIAL = """UPDATE tokens SET revoked_at = ?
WHERE credential_id = ? AND revoked_at IS NULL RETURNING access_digest"""
_INSERT_CODE = """INSERT INTO codes (digest, credential_id, service, authenticated_userid, scope,
    redirect_uri, code_challenge, code_challenge_method, created_at, expires_at)
VALUES (:digest, :credential_id, :service, :authenticated_userid, :scope, :redirect_uri,
    :code_challenge, :code_challenge_method, :created_at, :expires_at)"""
# Dead: revoked, or expired with its refresh token (if any) expired too, before the cutoff.
_SWEEP_TOKENS = """DELETE FROM tokens
WHERE (revoked_at IS NOT NULL AND revoked_at <= :cutoff)
   OR (expires_at IS NOT NULL AND expires_at <= :cutoff AND (refresh_digest IS NULL
       OR (refresh_expires_at IS NOT NULL AND refresh_expires_at <= :cutoff)))"""


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one boundary where driver exceptions become StoreErrors (architecture rule 5)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if text.startswith("UNIQUE") or "PRIMARY KEY" in text:
            raise Conflict(f"unique constraint failed: {text.rpartition(': ')[2]}") from exc
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
        self._listeners: list[RevocationListener] = []

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
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:  # let the statement in flight finish
                await _close_quietly(db)

    def on_revoked(self, listener: RevocationListener) -> None:
        self._listeners.append(listener)

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
        self, username: str | None, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        params = (str(uuid.uuid4()), username, custom_id, _json(tags), int(time.time()))
        return _consumer((await self._change(f"{_INSERT_CONSUMER} RETURNING *", params))[0])

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        params = (str(uuid.uuid4()), username, custom_id, _json(tags), int(time.time()))
        return _consumer((await self._change(_UPSERT_CONSUMER, params))[0])

    async def get_consumer(self, id_or_username: str) -> Consumer | None:
        rows = await self._read(
            "SELECT * FROM consumers WHERE id = :key OR username = :key"
            " ORDER BY id = :key DESC LIMIT 1",
            {"key": id_or_username},
        )
        return _consumer(rows[0]) if rows else None

    async def delete_consumer(self, consumer_id: str) -> bool:
        async def work(db: aiosqlite.Connection) -> tuple[bool, list[bytes]]:
            dead = await _digests(db, _LIVE_OF_CONSUMER, (consumer_id,))
            sql = "DELETE FROM consumers WHERE id = ? RETURNING id"
            return bool(await _fetch(db, sql, (consumer_id,))), dead

        return await self._write(work)

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        params = _credential_params(new, str(uuid.uuid4()), int(time.time()))
        return _credential((await self._change(_INSERT_CREDENTIAL, params))[0])

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """Also revokes the credential's tokens and drops its codes when its secret hash,
        client type or consumer changes: they were granted to a different client."""

        async def work(db: aiosqlite.Connection) -> tuple[Credential, list[bytes]]:
            sql = "SELECT * FROM credentials WHERE client_id = ?"
            rows = await _fetch(db, sql, (new.client_id,))
            if not rows:
                params = _credential_params(new, str(uuid.uuid4()), int(time.time()))
                return _credential((await _fetch(db, _INSERT_CREDENTIAL, params))[0]), []
            old = _credential(rows[0])
            dead: list[bytes] = []
            if (old.secret_hash, old.client_type, old.consumer_id) != (
                new.secret_hash,
                new.client_type,
                new.consumer_id,
            ):
                dead = await _digests(db, _REVOKE_CREDENTIAL, (time.time(), old.id))
                await _exec(db, "DELETE FROM codes WHERE credential_id = ?", (old.id,))
            params = _credential_params(new, old.id, old.created_at)
            return _credential((await _fetch(db, _UPDATE_CREDENTIAL, params))[0]), dead

        return await self._write(work)

    async def find_credential(self, client_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE client_id = ?", (client_id,))
        return _credential(rows[0]) if rows else None

    async def get_credential(self, credential_id: str) -> Credential | None:
        rows = await self._read("SELECT * FROM credentials WHERE id = ?", (credential_id,))
        return _credential(rows[0]) if rows else None

    async def delete_credential(self, credential_id: str) -> bool:
        async def work(db: aiosqlite.Connection) -> tuple[bool, list[bytes]]:
            dead = await _digests(
                db,
                "SELECT access_digest FROM tokens WHERE credential_id = ? AND revoked_at IS NULL",
                (credential_id,),
            )
            sql = "DELETE FROM credentials WHERE id = ? RETURNING id"
            return bool(await _fetch(db, sql, (credential_id,))), dead

        return await self._write(work)

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord) -> None:
        await self._change(_TOKENS_INSERT, asdict(record))

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        rows = await self._read(_TOKENS_JOINED, (access_digest,))
        if not rows:
            return None
        row = rows[0]
        return TokenView(
            token=_token(row),
            client_id=row["client_id"],
            consumer_id=row["consumer_id"],
            username=row["username"],
            custom_id=row["custom_id"],
        )

    async def find_refresh(self, refresh_digest: bytes) -> TokenRecord | None:
        rows = await self._read("SELECT * FROM tokens WHERE refresh_digest = ?", (refresh_digest,))
        return _token(rows[0]) if rows else None

    async def rotate_refresh(
        self, refresh_digest: bytes, new: TokenRecord, now: float
    ) -> TokenRecord | None:
        """Returns the retired row as it is after retirement (revoked_at and
        refresh_used_at = now), or None when no live row holds `refresh_digest`."""

        async def work(db: aiosqlite.Connection) -> tuple[TokenRecord | None, list[bytes]]:
            rows = await _fetch(db, _ROTATE, {"digest": refresh_digest, "now": now})
            if not rows:
                return None, []
            await _exec(db, _TOKENS_INSERT, asdict(new))
            old = _token(rows[0])
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
            live = await _fetch(db, _FIND_LIVE_REFRESH, {"digest": refresh_digest, "now": now})
            if not live:
                return None, []
            params = {"access": access_digest, "prefix": prefix, "expires": expires_at}
            rows = await _fetch(db, _REPLACE, {**params, "now": now, "id": live[0]["id"]})
            return _token(rows[0]), [live[0]["access_digest"]]

        return await self._write(work)

    async def revoke_family(self, family_id: str, now: float) -> int:
        sql = """UPDATE tokens SET revoked_at = ?
            WHERE family_id = ? AND revoked_at IS NULL RETURNING access_digest"""
        return len(await self._revoke(sql, (now, family_id)))

    async def revoke_token(self, token_id: str, now: float) -> bool:
        sql = """UPDATE tokens SET revoked_at = ?
            WHERE id = ? AND revoked_at IS NULL RETURNING access_digest"""
        return bool(await self._revoke(sql, (now, token_id)))

    # authorization codes ---------------------------------------------------------------
    async def save_code(self, code: AuthCode) -> None:
        await self._change(_INSERT_CODE, asdict(code))

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        rows = await self._change("DELETE FROM codes WHERE digest = ? RETURNING *", (digest,))
        if not rows or rows[0]["expires_at"] <= now:
            return None
        return _code(rows[0])

    # housekeeping ----------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        async def work(db: aiosqlite.Connection) -> tuple[int, list[bytes]]:
            codes = await _exec(db, "DELETE FROM codes WHERE expires_at <= ?", (now,))
            tokens = await _exec(db, _SWEEP_TOKENS, {"cutoff": now - grace_seconds})
            return codes + tokens, []

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
        """Runs `work` in one BEGIN IMMEDIATE transaction, then announces the digests it
        killed. Shielded: a cancelled caller cannot part a commit from its announcement."""
        return await asyncio.shield(self._write_now(work))

    async def _write_now(self, work: Work[T]) -> T:
        with _translated():
            async with self._lock:
                result, dead = await _in_transaction(self._connection(), work)
        self._announce(dead)
        return result

    def _announce(self, digests: Sequence[bytes]) -> None:
        if not digests:
            return
        batch = tuple(digests)
        for listener in tuple(self._listeners):
            try:
                listener(batch)
            except Exception:
                log.exception("revocation listener %r failed", listener)


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


def _json(values: tuple[str, ...]) -> str:
    return json.dumps(list(values))


def _strings(text: str) -> tuple[str, ...]:
    return tuple(str(value) for value in json.loads(text))


def _columns(row: sqlite3.Row, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


def _consumer(row: sqlite3.Row) -> Consumer:
    return Consumer(**{**_columns(row, _CONSUMER_FIELDS), "tags": _strings(row["tags"])})


def _credential_params(new: NewCredential, credential_id: str, created_at: int) -> dict[str, Any]:
    params = asdict(new)
    params.update(
        id=credential_id,
        redirect_uris=_json(new.redirect_uris),
        client_type=str(new.client_type),
        tags=_json(new.tags),
        created_at=created_at,
    )
    return params


def _credential(row: sqlite3.Row) -> Credential:
    decoded = {
        "redirect_uris": _strings(row["redirect_uris"]),
        "client_type": ClientType(row["client_type"]),
        "tags": _strings(row["tags"]),
    }
    return Credential(**{**_columns(row, _CREDENTIAL_FIELDS), **decoded})


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(**_columns(row, _TOKEN_FIELDS))


def _code(row: sqlite3.Row) -> AuthCode:
    return AuthCode(**_columns(row, _CODE_FIELDS))
