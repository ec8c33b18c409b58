"""The Store, written once over a backend's `Database` (design §7).

Invariants, on every backend:
- A write is one transaction (`Database.write`): the statements of the call, then, in the same
  transaction, the revocation log of every digest it killed or whose cached copies it made
  stale (a token's expiry or scope, its client's client_id, its consumer's username or
  custom_id, with the consumer's marker); then COMMIT; then, and only then, those digests are
  announced to the `on_revoked` listeners. Nothing is logged or announced for a rollback.
- Races are settled by the database: a backend's transactions either take turns (SQLite) or
  lock what they change next (PostgreSQL, sql.Dialect), so that of concurrent callers exactly
  one wins, and of a save checked against its client and a change to that client the later
  sees the earlier.
- A cancelled caller of a write waits for its commit and announcement (base.py rule 5).
- Only StoreError subclasses leave: each Database translates its driver's errors once.
The data rules are rules.py's, the SQL sql.py's; a backend's own strategies (SQLite's group
commit, PostgreSQL's checked inserts, each one's import and revocation log) are its Database's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from edgeauth.crypto import consumer_marker
from edgeauth.errors import Conflict, StoreError
from edgeauth.models import AuthCode, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store import sql as q
from edgeauth.store.base import (
    ConsumerPatch,
    CredentialPatch,
    NewCredential,
    Page,
    RevocationListener,
    TagFilter,
    TokenFilter,
)
from edgeauth.store.rows import (
    INT64,
    Row,
    page,
    to_consumer,
    to_credential,
    to_token,
    to_token_view,
    token_values,
)
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
    Dialect,
    Where,
    page_query,
    revoke_query,
    tags_where,
    tokens_where,
    update_query,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Tokens per transaction of an import: the gateway's own writes wait at most one chunk.
IMPORT_CHUNK = 5000
# Rows a sweep deletes per transaction: issuance's commits wait for at most one batch (on a
# store of 5 M tokens, 500 took 21-38 ms, most of it in the access digests' random pages).
SWEEP_BATCH = 200


class Tx(Protocol):
    """The connection of one write, inside its transaction; statements in sql.py's style."""

    async def fetch(self, sql: str, *params: object) -> Sequence[Row]: ...

    async def execute(self, sql: str, *params: object) -> int:
        """The statement's row count."""


# The statements of a write: its result, and the digests it killed or made stale.
Work = Callable[[Tx], Awaitable[tuple[T, Sequence[bytes]]]]


class Database(Protocol):
    """What a backend does beneath the Store: connections, transactions, its dialect, and the
    strategies that are its own. Raises only StoreError subclasses."""

    dialect: Dialect

    async def open(self) -> None:
        """Connect and run pending forward-only migrations; idempotent."""

    async def close(self) -> None: ...

    async def diagnostics(self) -> dict[str, object]: ...

    async def read(self, sql: str, *params: object) -> Sequence[Row]:
        """One statement outside any write transaction."""

    def token_view(self, access_digest: bytes) -> Awaitable[Sequence[Row]]:
        """VIEW_OF_ACCESS's rows for one digest (Store.find_token), read after the call;
        a backend may read several callers' digests in one statement."""

    async def write(self, work: Work[T], *, atomic: bool = True) -> tuple[T, Sequence[bytes]]:
        """Run `work` in one transaction that also logs the digests it returns (not atomic:
        `work` is one statement and kills nothing, which a backend may run without an explicit
        transaction); commit, retrying a transaction the database chose to abort (deadlock,
        serialization) as a whole. Announcing is the caller's, after this returns."""

    def save_token(self, record: TokenRecord, expected: Credential | None) -> Awaitable[None]:
        """Store.save_token once `expected` is known; ClientChanged if it no longer holds."""

    def save_code(self, code: AuthCode, expected: Credential | None) -> Awaitable[None]:
        """Store.save_code once `expected` is known; ClientChanged if it no longer holds."""

    def import_tokens(self, records: Sequence[TokenRecord]) -> Awaitable[int]:
        """Insert one chunk of an import in one transaction, skipping what is stored."""


class Listeners:
    """A store's `on_revoked` listeners. Called only after COMMIT; one failing listener is
    logged and never keeps the others from hearing."""

    def __init__(self) -> None:
        self._listeners: list[RevocationListener] = []

    def add(self, listener: RevocationListener) -> None:
        self._listeners.append(listener)

    def announce(self, digests: Sequence[bytes]) -> None:
        if not digests:
            return
        batch = tuple(digests)
        for listener in tuple(self._listeners):
            try:
                listener(batch)
            except Exception:
                log.exception("revocation listener %r failed", listener)


async def _settled(write: Awaitable[T]) -> T:
    """`write`'s result; a cancelled caller waits for `write` to end (its commit and
    announcement, or its failure) before its cancellation proceeds: the two are never parted,
    and what the caller does next sees the write."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the caller is gone
        raise


class SQLStore:
    """`Store` over a `Database`; see the module docstring for its rules."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.dialect
        self._listeners = Listeners()
        self._last_found: tuple[Row | None, Credential | None] = (None, None)

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    def on_revoked(self, listener: RevocationListener) -> None:
        self._listeners.add(listener)

    async def ping(self) -> bool:
        try:
            await self._db.read("SELECT 1")
        except StoreError:
            return False
        return True

    async def diagnostics(self) -> dict[str, object]:
        """The backend's settings in effect and its schema version (status pages, tests)."""
        return await self._db.diagnostics()

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
        params = (consumer_id, username, custom_id, self._dialect.strings_param(tags), at)
        return self._consumer((await self._change(f"{q.INSERT_CONSUMER} RETURNING *", *params))[0])

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        tags_value = self._dialect.strings_param(tags)
        params = (str(uuid.uuid4()), username, custom_id, tags_value, int(time.time()))

        async def work(tx: Tx) -> tuple[Consumer, list[bytes]]:
            if self._dialect.lock_username is not None:
                await tx.execute(self._dialect.lock_username, username)
            old = await tx.fetch(self._locked(q.CONSUMER_NAMED), username)
            consumer = self._consumer((await tx.fetch(q.UPSERT_CONSUMER, *params))[0])
            stale = (
                await self._identity_changed(tx, self._consumer(old[0]), consumer) if old else []
            )
            return consumer, stale

        return await self._write(work)

    async def get_consumer(self, id_or_username: str) -> Consumer | None:
        rows = await self._db.read(q.GET_CONSUMER, id_or_username)
        return self._consumer(rows[0]) if rows else None

    async def list_consumers(
        self, *, tags: TagFilter | None = None, after: str | None = None, size: int = 100
    ) -> Page[Consumer]:
        where = Where()
        tags_where(where, "consumers.tags", tags, self._dialect.tags_match)
        select = "SELECT * FROM consumers"
        sql, params = page_query(select, where, "consumers", after, size, whole=True)
        return page(await self._db.read(sql, *params), size, self._consumer)

    async def update_consumer(self, consumer_id: str, patch: ConsumerPatch) -> Consumer | None:
        values = patch_values(patch, CONSUMER_PATCH, self._dialect.strings_param)
        if not values:
            rows = await self._db.read(q.CONSUMER, consumer_id)
            return self._consumer(rows[0]) if rows else None

        async def work(tx: Tx) -> tuple[Consumer | None, list[bytes]]:
            old = await tx.fetch(self._locked(q.CONSUMER), consumer_id)
            if not old:
                return None, []
            sql = update_query("consumers", values, "*")
            consumer = self._consumer((await tx.fetch(sql, consumer_id, *values.values()))[0])
            return consumer, await self._identity_changed(tx, self._consumer(old[0]), consumer)

        return await self._write(work)

    async def delete_consumer(self, consumer_id: str) -> bool:
        async def work(tx: Tx) -> tuple[bool, list[bytes]]:
            if not await tx.fetch(self._locked(q.CONSUMER), consumer_id):
                return False, []
            await self._lock_credentials_of(tx, consumer_id)
            dead = await _digests(tx, q.LIVE_OF_CONSUMER, consumer_id)
            await tx.execute(q.DELETE_CONSUMER, consumer_id)
            return True, [*dead, consumer_marker(consumer_id)]

        return await self._write(work)

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        params = self._credential_values(new, *identity(new.id, new.created_at))
        return self._credential((await self._change(q.INSERT_CREDENTIAL, *params))[0])

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """What a change does to the credential's tokens and codes: see rules.client_change.
        A seed that loses the insert to a concurrent one (possible where writers do not take
        turns) updates the row the winner inserted."""

        async def work(tx: Tx) -> tuple[Credential, list[bytes]]:
            rows = await tx.fetch(self._locked(q.CLIENT), new.client_id)
            if not rows:
                params = self._credential_values(new, *identity(new.id, new.created_at))
                created = await tx.fetch(q.SEED_CREDENTIAL, *params)
                if created:
                    return self._credential(created[0]), []
                rows = await tx.fetch(self._locked(q.CLIENT), new.client_id)
                if not rows:
                    raise Conflict(
                        "credentials", "client_id", "the client_id changed hands during the upsert"
                    )
            old = self._credential(rows[0])
            changes = self._upserted(new)
            sql = update_query("credentials", changes, "*")
            updated = self._credential((await tx.fetch(sql, old.id, *changes.values()))[0])
            return updated, await self._client_changed(tx, old, updated)

        return await self._write(work)

    async def find_credential(self, client_id: str) -> Credential | None:
        """The readers of one shared read (sqlite.py) get one Credential: its row is made into
        one once, not once per token request."""
        rows = await self._db.read(q.CLIENT, client_id)
        if not rows:
            return None
        row, made = self._last_found
        if rows[0] is not row:
            made = self._credential(rows[0])
            self._last_found = (rows[0], made)
        return made

    async def get_credential(self, credential_id: str) -> Credential | None:
        rows = await self._db.read(q.CREDENTIAL, credential_id)
        return self._credential(rows[0]) if rows else None

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
        tags_where(where, "credentials.tags", tags, self._dialect.tags_match)
        select = "SELECT * FROM credentials"
        sql, params = page_query(select, where, "credentials", after, size, whole=True)
        return page(await self._db.read(sql, *params), size, self._credential)

    async def update_credential(
        self, credential_id: str, patch: CredentialPatch
    ) -> Credential | None:
        """What a change does to the credential's tokens and codes: see rules.client_change."""
        values = patch_values(patch, CREDENTIAL_PATCH, self._dialect.strings_param)

        async def work(tx: Tx) -> tuple[Credential | None, list[bytes]]:
            rows = await tx.fetch(self._locked(q.CREDENTIAL), credential_id)
            if not rows:
                return None, []
            old = self._credential(rows[0])
            if values:
                sql = update_query("credentials", values, "*")
                rows = await tx.fetch(sql, credential_id, *values.values())
            updated = self._credential(rows[0])
            return updated, await self._client_changed(tx, old, updated)

        return await self._write(work)

    async def delete_credential(self, credential_id: str) -> bool:
        async def work(tx: Tx) -> tuple[bool, list[bytes]]:
            if not await tx.fetch(self._locked(q.CREDENTIAL), credential_id):
                return False, []
            dead = await _digests(tx, q.LIVE_OF_CREDENTIAL, credential_id)
            await tx.execute(q.DELETE_CREDENTIAL, credential_id)
            return True, dead

        return await self._write(work)

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord, issued_to: Credential | None = None) -> None:
        expected = expected_client(record.credential_id, issued_to)
        await _settled(self._db.save_token(record, expected))

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        """IMPORT_CHUNK rows per transaction; nothing is announced (no cache holds a token
        that was not stored yet)."""
        inserted = 0
        for start in range(0, len(records), IMPORT_CHUNK):
            chunk = records[start : start + IMPORT_CHUNK]
            inserted += await _settled(self._db.import_tokens(chunk))
        return inserted

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        rows = await self._db.token_view(access_digest)
        return to_token_view(rows[0]) if rows else None

    async def get_token(self, token_id: str) -> TokenView | None:
        rows = await self._db.read(q.VIEW, token_id)
        return to_token_view(rows[0]) if rows else None

    async def list_tokens(
        self, which: TokenFilter, now: float, *, after: str | None = None, size: int = 100
    ) -> Page[TokenView]:
        """Active means not revoked and the access token not expired at `now`."""
        where = tokens_where(which, now, "t", Where())
        sql, params = page_query(q.VIEWS_SELECT, where, "t", after, size, whole=False)
        return page(await self._db.read(sql, *params), size, to_token_view)

    async def update_token(
        self, token_id: str, *, expires_at: float | bool | None = False, scope: str | None = None
    ) -> TokenView | None:
        """Announces (and logs) the access digest whenever something was set, revoked token
        or not, so that every cache re-reads it; a call changing nothing announces nothing."""
        values = token_changes(expires_at, scope)
        if not values:
            return await self.get_token(token_id)

        async def work(tx: Tx) -> tuple[TokenView | None, list[bytes]]:
            sql = update_query("tokens", values, "access_digest")
            changed = await _digests(tx, sql, token_id, *values.values())
            if not changed:
                return None, []
            return to_token_view((await tx.fetch(q.VIEW, token_id))[0]), changed

        return await self._write(work)

    async def find_refresh(self, refresh_digest: bytes) -> TokenRecord | None:
        rows = await self._db.read(q.HOLDING_REFRESH, refresh_digest)
        return to_token(rows[0]) if rows else None

    async def rotate_refresh(
        self, refresh_digest: bytes, new: TokenRecord, now: float
    ) -> TokenRecord | None:
        """Returns the retired row as it is after retirement (revoked_at and
        refresh_used_at = now), or None when no live row holds `refresh_digest`."""

        async def work(tx: Tx) -> tuple[TokenRecord | None, list[bytes]]:
            rows = await tx.fetch(q.ROTATE, refresh_digest, float(now))
            if not rows:
                return None, []
            await tx.execute(q.TOKENS_INSERT, *token_values(new))
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
        async def work(tx: Tx) -> tuple[TokenRecord | None, list[bytes]]:
            live = await tx.fetch(self._locked(q.LIVE_REFRESH), refresh_digest, float(now))
            if not live:
                return None, []
            params = (live[0]["id"], access_digest, prefix, expires_at, float(now))
            rows = await tx.fetch(q.REPLACE, *params)
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
        return int((await self._db.read(self._dialect.revocation_head))[0]["seq"])

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """A seq is never returned before a smaller one still to come (each backend's log
        writers commit in seq order)."""
        if limit <= 0:
            return []
        seq = max(-INT64, min(int(seq), INT64))
        rows = await self._db.read(q.REVOCATIONS_SINCE, seq, min(int(limit), INT64))
        return [(int(row["seq"]), bytes(row["access_digest"])) for row in rows]

    # authorization codes ---------------------------------------------------------------
    async def save_code(self, code: AuthCode, issued_to: Credential | None = None) -> None:
        expected = expected_client(code.credential_id, issued_to)
        await _settled(self._db.save_code(code, expected))

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        return unexpired_code(await self._change(q.TAKE_CODE, digest), now)

    # housekeeping ----------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        """Also prunes revocation-log entries older than REVOCATION_LOG_SECONDS (counted in
        the rows deleted). Tokens and log entries go SWEEP_BATCH at a time, one transaction
        each, found by their indexes: the writers waiting meanwhile (issuance) take their
        turns between batches, whatever the size of the store."""
        removed = await self._count(q.SWEEP_CODES, float(now))
        cutoff = float(now - grace_seconds)
        removed += await self._sweep(q.SWEEP_EXPIRED, cutoff)
        removed += await self._sweep(q.SWEEP_REVOKED, cutoff)
        return removed + await self._sweep(q.SWEEP_REVOCATIONS, now - REVOCATION_LOG_SECONDS)

    async def _sweep(self, sql: str, cutoff: float) -> int:
        """Runs `sql` (?1 the cutoff, ?2 the batch size) until a batch comes back short."""
        removed = 0
        while True:
            deleted = await self._count(sql, float(cutoff), SWEEP_BATCH)
            removed += deleted
            if deleted < SWEEP_BATCH:
                return removed

    async def _count(self, sql: str, *params: object) -> int:
        """One statement that kills nothing, in a transaction of its own; its row count."""

        async def work(tx: Tx) -> tuple[int, list[bytes]]:
            return await tx.execute(sql, *params), []

        return await self._write(work)

    # changes to what tokens were granted to -----------------------------------------------
    async def _identity_changed(self, tx: Tx, old: Consumer, new: Consumer) -> list[bytes]:
        """The digests and marker to log and announce when rules.identity_changed. The
        credentials are locked first, so that a token being saved for one of them either is
        read here or commits after this change."""
        if not identity_changed(old, new):
            return []
        await self._lock_credentials_of(tx, old.id)
        return [*await _digests(tx, q.LIVE_OF_CONSUMER, old.id), consumer_marker(old.id)]

    async def _client_changed(self, tx: Tx, old: Credential, new: Credential) -> list[bytes]:
        """Carries out rules.client_change (the credential's row locked); returns the digests
        to log and announce."""
        change = client_change(old, new)
        if change.void:
            dead = await _digests(tx, q.REVOKE_CREDENTIAL, time.time(), old.id)
            await tx.execute(q.DROP_CODES, old.id)
            return dead
        if change.dropped:
            uris = self._dialect.strings_param(change.dropped)
            await tx.execute(self._dialect.drop_codes_to, old.id, uris, change.default_dropped)
        return await _digests(tx, q.LIVE_OF_CREDENTIAL, old.id) if change.renamed else []

    async def _lock_credentials_of(self, tx: Tx, consumer_id: str) -> None:
        if self._dialect.lock_credentials_of is not None:
            await tx.execute(self._dialect.lock_credentials_of, consumer_id)

    # plumbing --------------------------------------------------------------------------
    def _locked(self, select: str) -> str:
        """`select`, locking its rows where the dialect must (sql.Dialect)."""
        return f"{select}{self._dialect.for_update}"

    def _consumer(self, row: Row) -> Consumer:
        return to_consumer(row, self._dialect.strings)

    def _credential(self, row: Row) -> Credential:
        return to_credential(row, self._dialect.strings)

    def _credential_values(
        self, new: NewCredential, credential_id: str, created_at: int
    ) -> tuple[object, ...]:
        """INSERT_CREDENTIAL's (and SEED_CREDENTIAL's) parameters."""
        return (credential_id, new.client_id, created_at, *self._upserted(new).values())

    def _upserted(self, new: NewCredential) -> dict[str, object]:
        """The columns an upsert of `new` sets on a stored row: all but the id and created_at
        (the row keeps its own) and client_id (the key it was found by)."""
        strings = self._dialect.strings_param
        return {
            "consumer_id": new.consumer_id,
            "name": new.name,
            "secret_hash": new.secret_hash,
            "redirect_uris": strings(new.redirect_uris),
            "client_type": str(new.client_type),
            "tags": strings(new.tags),
        }

    async def _change(self, sql: str, *params: object) -> Sequence[Row]:
        """one_statement, its cancelled caller waiting for it as for every write."""
        return await _settled(one_statement(self._db, sql, *params))

    async def _revoke(self, sql: str, *params: object) -> list[bytes]:
        async def work(tx: Tx) -> tuple[list[bytes], list[bytes]]:
            dead = await _digests(tx, sql, *params)
            return dead, dead

        return await self._write(work)

    async def _write(self, work: Work[T]) -> T:
        return await _settled(self._committed(work))

    async def _committed(self, work: Work[T]) -> T:
        result, dead = await self._db.write(work)
        self._listeners.announce(dead)
        return result


async def one_statement(db: Database, sql: str, *params: object) -> Sequence[Row]:
    """One statement that kills nothing, committed on its own; its RETURNING rows. The Store's
    inserts and take_code run it, and so do a backend's own saves."""

    async def work(tx: Tx) -> tuple[Sequence[Row], list[bytes]]:
        return await tx.fetch(sql, *params), []

    return (await db.write(work, atomic=False))[0]


async def _digests(tx: Tx, sql: str, *params: object) -> list[bytes]:
    return [bytes(row["access_digest"]) for row in await tx.fetch(sql, *params)]
