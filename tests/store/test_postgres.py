"""What only the PostgreSQL backend promises: races settled across stores (nodes), migrations
under an advisory lock, NOTIFY of every revocation at COMMIT, the log's commit order, session
settings and pool size. Real server only (tests/store/conftest.py skips or fails without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest

from edgeauth.config import StoreSettings
from edgeauth.crypto import consumer_marker
from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import Consumer
from edgeauth.store import open_store
from edgeauth.store.rows import encode_cursor
from tests.store.conftest import PG_DSN, PgSchema, pg_connect, pg_schema, require_driver, with_query
from tests.store.records import Announcements, App, auth_code, digest, mint, new_credential, saved
from tests.store.test_contract import rotate_race

require_driver()  # skips (or fails) this module without asyncpg, before the import below
from edgeauth.store.postgres import (  # noqa: E402
    MIGRATION_LOCK_CLASS,
    MIGRATIONS,
    NOTIFY_CHANNEL,
    PostgresStore,
    notify_payloads,
    parse_notification,
)

QUIET = 0.3  # how long "nothing arrives" is watched for


@pytest.fixture
async def pg() -> AsyncIterator[PgSchema]:
    async with pg_schema() as schema:
        yield schema


@contextlib.asynccontextmanager
async def opened(*stores: PostgresStore) -> AsyncIterator[tuple[PostgresStore, ...]]:
    """The stores, opened at once, and closed afterwards."""
    try:
        await asyncio.gather(*(store.open() for store in stores))
        yield stores
    finally:
        for store in stores:
            await store.close()


@contextlib.asynccontextmanager
async def raw(pg: PgSchema) -> AsyncIterator[Any]:
    """A plain asyncpg connection on the test schema, beside the stores."""
    conn = await pg_connect(pg.dsn)
    try:
        yield conn
    finally:
        await conn.close()


class Notifications:
    """What a plain connection LISTENing on the revocation channel hears. The channel is
    database-wide, so tests look for their own digests only (another run may share it)."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._arrived = asyncio.Event()

    def __call__(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        assert len(payload.encode()) < 8000
        self.payloads.append(payload)
        self._arrived.set()

    def count(self, digests: Iterable[bytes]) -> Counter[bytes]:
        """How often each of `digests` was heard."""
        wanted = set(digests)
        heard = (d for payload in self.payloads for d in parse_notification(payload))
        return Counter(d for d in heard if d in wanted)

    async def wait_for(self, digests: Iterable[bytes]) -> Counter[bytes]:
        """Waits until every one of `digests` was heard; then how often each was."""
        wanted = set(digests)
        async with asyncio.timeout(5):
            while set(self.count(wanted)) != wanted:
                self._arrived.clear()
                await self._arrived.wait()
        return self.count(wanted)


@contextlib.asynccontextmanager
async def listening(pg: PgSchema) -> AsyncIterator[Notifications]:
    notifications = Notifications()
    async with raw(pg) as conn:
        await conn.add_listener(NOTIFY_CHANNEL, notifications)
        yield notifications


async def make_app(store: PostgresStore) -> App:
    consumer = await store.create_consumer("alice", "alice-1")
    return App(consumer, await store.create_credential(new_credential(consumer.id)))


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{check.__name__} still false after {seconds} s")


# races across nodes ---------------------------------------------------------------------------


async def test_take_code_from_three_stores_has_one_winner(pg: PgSchema) -> None:
    async with opened(*(PostgresStore(pg.dsn, pool_size=5) for _ in range(3))) as stores:
        app = await make_app(stores[0])
        for _ in range(5):
            now = time.time()
            raw_code, code = auth_code(app.credential.id, now)
            await stores[1].save_code(code)
            results = await asyncio.gather(
                *(stores[i % 3].take_code(digest(raw_code), now) for i in range(45))
            )
            assert [result for result in results if result is not None] == [code]


async def test_rotate_refresh_from_three_stores_has_one_winner(pg: PgSchema) -> None:
    async with opened(*(PostgresStore(pg.dsn, pool_size=5) for _ in range(3))) as stores:
        app = await make_app(stores[0])
        heard = Announcements()
        for store in stores:
            store.on_revoked(heard)
        for _ in range(5):
            old = await saved(stores[2], mint(app.credential.id, time.time()))
            assert old.refresh is not None
            assert await rotate_race(stores, app, old.refresh, time.time()) == 1
            assert heard.digests[-1] == old.record.access_digest
        assert len(heard.batches) == 5
        assert [d for _, d in await stores[1].revocations_since(0)] == heard.digests


async def test_replace_access_from_two_stores_announces_every_replaced_token(
    pg: PgSchema,
) -> None:
    """Concurrent replacements take turns: each announces the access token it replaced, even
    one that a concurrent call had just put there."""
    async with opened(*(PostgresStore(pg.dsn, pool_size=5) for _ in range(2))) as stores:
        app = await make_app(stores[0])
        heard = Announcements()
        for store in stores:
            store.on_revoked(heard)
        old = await saved(stores[0], mint(app.credential.id, time.time()))
        assert old.refresh is not None
        now, fresh = time.time(), [digest(str(uuid.uuid4())) for _ in range(20)]
        results = await asyncio.gather(
            *(
                stores[i % 2].replace_access(digest(old.refresh), new, "p", None, now)
                for i, new in enumerate(fresh)
            )
        )
        assert all(result is not None for result in results)
        final = await stores[1].find_refresh(digest(old.refresh))
        assert final is not None
        assert final.access_digest in fresh
        expected = {old.record.access_digest, *fresh} - {final.access_digest}
        assert sorted(heard.digests) == sorted(expected)


async def test_a_transaction_that_loses_a_deadlock_is_retried(
    pg: PgSchema, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"{pg.name}_deadlock"
    dsn = with_query(PG_DSN, options=f"-csearch_path={pg.name}", application_name=name)
    async with opened(PostgresStore(dsn)) as (store,):
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        async with raw(pg) as conn:
            await conn.execute("SET deadlock_timeout = '60s'")  # the store's session checks
            other = conn.transaction()
            await other.start()
            await conn.execute("UPDATE revocation_head SET seq = seq")
            revoking = asyncio.create_task(store.revoke_token(token.record.id, time.time()))

            async def store_waits() -> bool:
                sql = """SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = $1 AND wait_event_type = 'Lock'"""
                return bool(await conn.fetchval(sql, name))

            await wait_until(store_waits)  # holding the token row, waiting for the head row
            await conn.execute("UPDATE tokens SET scope = scope WHERE id = $1", token.record.id)
            await other.commit()  # the store lost the deadlock, and retries after this
        assert await asyncio.wait_for(revoking, 10) is True
    assert any("retrying" in record.getMessage() for record in caplog.records)


async def test_a_checked_save_waits_for_a_change_of_its_client_and_sees_it(pg: PgSchema) -> None:
    """A save checked against the old secret while the new one is being committed waits for
    that commit (FOR SHARE against FOR UPDATE) and re-checks the committed row."""
    async with opened(PostgresStore(pg.dsn)) as (store,):
        app = await make_app(store)
        now = time.time()
        minted = mint(app.credential.id, now)
        raw_code, code = auth_code(app.credential.id, now)
        async with raw(pg) as conn:
            change = conn.transaction()
            await change.start()
            await conn.execute(
                "SELECT 1 FROM credentials WHERE id = $1 FOR UPDATE", app.credential.id
            )
            await conn.execute(
                "UPDATE credentials SET secret_hash = 'new' WHERE id = $1", app.credential.id
            )
            saves = asyncio.gather(
                store.save_token(minted.record, issued_to=app.credential),
                store.save_code(code, issued_to=app.credential),
                return_exceptions=True,
            )
            await asyncio.sleep(QUIET)
            assert not saves.done()
            await change.commit()
        results = await asyncio.wait_for(saves, 5)
        assert [type(result) for result in results] == [ClientChanged, ClientChanged]
        assert await store.find_token(minted.record.access_digest) is None
        assert await store.take_code(digest(raw_code), now) is None


async def test_nodes_seeding_the_same_records_at_once_agree(pg: PgSchema) -> None:
    """Several nodes starting at once apply the same declarative seed: no Conflict, one row."""
    async with opened(*(PostgresStore(pg.dsn, pool_size=5) for _ in range(3))) as stores:
        for round_ in range(10):
            username = f"seed-{round_}"
            consumers = await asyncio.gather(
                *(stores[i % 3].upsert_consumer(username, f"{username}-ext") for i in range(12))
            )
            assert len({consumer.id for consumer in consumers}) == 1
            new = new_credential(consumers[0].id, client_id=f"client-{round_}")
            credentials = await asyncio.gather(
                *(stores[i % 3].upsert_credential(new) for i in range(12))
            )
            assert len(set(credentials)) == 1


# migrations -----------------------------------------------------------------------------------


async def test_several_stores_migrating_a_new_schema_at_once_all_succeed(pg: PgSchema) -> None:
    async with opened(*(PostgresStore(pg.dsn, pool_size=2) for _ in range(6))) as stores:
        for store in stores:
            assert (await store.diagnostics())["version"] == len(MIGRATIONS)
        async with raw(pg) as conn:
            assert await conn.fetchval("SELECT count(*) FROM edgeauth_schema") == 1
            assert await conn.fetchval("SELECT count(*) FROM revocation_head") == 1
        made = await stores[0].create_consumer("one", None)
        assert await stores[5].get_consumer("one") == made


async def test_a_version_one_schema_keeps_its_tokens_and_gains_refresh_scope_and_sweep_indexes(
    pg: PgSchema,
) -> None:
    old = mint("c1", time.time()).record
    async with raw(pg) as conn:
        await conn.execute(MIGRATIONS[0])
        await conn.execute(
            """CREATE TABLE edgeauth_schema (version INTEGER NOT NULL);
            INSERT INTO edgeauth_schema (version) VALUES (1);
            INSERT INTO consumers (id, username, created_at) VALUES ('k1', 'old', 1);
            INSERT INTO credentials (id, consumer_id, name, client_id, client_type, created_at)
            VALUES ('c1', 'k1', 'app', 'client-1', 'public', 1);"""
        )
        await conn.execute(
            "INSERT INTO tokens (id, access_digest, prefix, credential_id, scope, family_id,"
            " created_at) VALUES ($1, $2, 'p', 'c1', 'read', 'f1', 1.0)",
            old.id,
            old.access_digest,
        )
        await conn.execute(  # expired long ago: the sweep finds it by the index V3 adds
            "INSERT INTO tokens (id, access_digest, prefix, credential_id, scope, family_id,"
            " created_at, expires_at) VALUES ('dead', $1, 'p', 'c1', '', 'f2', 1.0, 2.0)",
            bytes(32),
        )
    async with opened(PostgresStore(pg.dsn)) as (store,):
        assert (await store.diagnostics())["version"] == len(MIGRATIONS) == 3
        assert await store.sweep(time.time()) == 1
        assert await store.find_token(bytes(32)) is None
        view = await store.find_token(old.access_digest)
        assert view is not None
        assert (view.token.id, view.token.scope, view.token.refresh_scope) == (old.id, "read", None)
        wider = replace(mint("c1", time.time()).record, scope="read", refresh_scope="read write")
        await store.save_token(wider)
        assert wider.refresh_digest is not None
        assert await store.find_refresh(wider.refresh_digest) == wider


async def test_migrations_wait_for_the_advisory_lock(pg: PgSchema) -> None:
    async with raw(pg) as holder:
        await holder.execute(
            "SELECT pg_advisory_lock($1, hashtext($2))", MIGRATION_LOCK_CLASS, pg.name
        )
        store = PostgresStore(pg.dsn)
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(QUIET)
        assert not opening.done()  # waiting on the lock, not failing or migrating
        await holder.execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))", MIGRATION_LOCK_CLASS, pg.name
        )
        await asyncio.wait_for(opening, 5)
    try:
        assert await store.ping()
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)):
        pass
    async with raw(pg) as conn:
        await conn.execute("UPDATE edgeauth_schema SET version = $1", len(MIGRATIONS) + 1)
    store = PostgresStore(pg.dsn)
    with pytest.raises(StoreUnavailable, match="newer"):
        await store.open()
    assert await store.ping() is False


async def test_a_missing_schema_is_unavailable(pg: PgSchema) -> None:
    dsn = with_query(PG_DSN, options="-csearch_path=edgeauth_no_such_schema")
    store = PostgresStore(dsn)
    with pytest.raises(StoreUnavailable, match="schema"):
        await store.open()


async def test_search_path_as_a_dsn_parameter_selects_the_schema(pg: PgSchema) -> None:
    dsn = with_query(PG_DSN, search_path=pg.name)
    async with opened(PostgresStore(dsn)) as (store,):
        assert (await store.diagnostics())["schema"] == pg.name


# errors ---------------------------------------------------------------------------------------


async def test_conflicts_name_table_and_column_as_sqlite_does(pg: PgSchema) -> None:
    """The admin API reads the column from `unique constraint failed: table.column`."""
    async with opened(PostgresStore(pg.dsn)) as (store,):
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        _, code = auth_code(app.credential.id, time.time())
        await store.save_code(code)
        clash = replace(mint(app.credential.id, time.time()).record, id=token.record.id)
        calls: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: store.create_consumer("alice", None), "consumers.username"),
            (lambda: store.create_consumer("bob", "alice-1"), "consumers.custom_id"),
            (
                lambda: store.create_credential(
                    new_credential(app.consumer.id, client_id=app.credential.client_id)
                ),
                "credentials.client_id",
            ),
            (
                lambda: store.save_token(replace(token.record, id=str(uuid.uuid4()))),
                "tokens.access_digest",
            ),
            (lambda: store.save_token(clash), "tokens.id"),
            (lambda: store.save_code(code), "codes.digest"),
        ]
        for call, column in calls:
            with pytest.raises(Conflict) as caught:
                await call()
            assert caught.value.message == f"unique constraint failed: {column}"


async def test_a_fractional_cursor_time_on_whole_second_lists(pg: PgSchema) -> None:
    """Consumers' created_at is whole seconds; a cursor may carry any number, as on SQLite."""
    async with opened(PostgresStore(pg.dsn)) as (store,):
        made = [await store.create_consumer(f"u{i}", None) for i in range(3)]
        made.sort(key=lambda c: (c.created_at, c.id))

        async def listed(created_at: float, row_id: str) -> list[Consumer]:
            page = await store.list_consumers(after=encode_cursor(created_at, row_id))
            return list(page.items)

        assert await listed(made[0].created_at + 0.0, made[0].id) == made[1:]
        assert await listed(made[-1].created_at + 0.5, "") == []
        assert await listed(made[0].created_at - 0.5, "~") == made


async def test_unavailable_does_not_tell_the_driver_error_once_open(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,):
        async with raw(pg) as conn:
            await conn.execute("DROP TABLE consumers CASCADE")
        with pytest.raises(StoreUnavailable) as caught:
            await store.get_consumer("alice")
        assert caught.value.message == StoreUnavailable.message


async def test_text_the_database_cannot_hold_is_the_callers_error(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,):
        with pytest.raises(StoreError) as caught:
            await store.create_consumer("nul\x00byte", None)
        assert type(caught.value) is StoreError
        assert await store.ping()


# NOTIFY ---------------------------------------------------------------------------------------


async def test_a_revocation_is_notified_as_hex_digests(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,), listening(pg) as heard:
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        assert await store.revoke_token(token.record.id, time.time())
        await heard.wait_for([token.record.access_digest])
        assert token.record.access_digest.hex() in heard.payloads
        await asyncio.sleep(QUIET)
        assert heard.count([token.record.access_digest]) == {token.record.access_digest: 1}


async def test_every_killing_call_is_notified(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,), listening(pg) as heard:
        app = await make_app(store)
        now, cid = time.time(), app.credential.id
        old = await saved(store, mint(cid, now))
        assert old.refresh is not None
        new = mint(cid, now, family_id=old.record.family_id)
        await store.rotate_refresh(digest(old.refresh), new.record, now)
        await heard.wait_for([old.record.access_digest])
        changed = await saved(store, mint(cid, now))
        await store.update_token(changed.record.id, scope="read")
        assert await heard.wait_for([changed.record.access_digest])
        await store.delete_consumer(app.consumer.id)
        both = [new.record.access_digest, changed.record.access_digest]
        assert await heard.wait_for(both) == {
            new.record.access_digest: 1,
            changed.record.access_digest: 2,  # by update_token, then by the delete
        }


async def test_identity_changes_are_notified_without_revoking(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,), listening(pg) as heard:
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        access, marker = token.record.access_digest, consumer_marker(app.consumer.id)

        async def heard_times(access_times: int, marker_times: int) -> None:
            async def counted() -> bool:
                return heard.count([access, marker]) == {access: access_times, marker: marker_times}

            await wait_until(counted)

        await store.update_consumer(app.consumer.id, {"username": "alicia"})
        await heard_times(1, 1)
        await store.update_credential(app.credential.id, {"client_id": "renamed"})
        await heard_times(2, 1)
        await store.upsert_consumer("alicia", "alicia-2")
        await heard_times(3, 2)
        await asyncio.sleep(QUIET)
        assert heard.count([access, marker]) == {access: 3, marker: 2}
        view = await store.find_token(access)
        assert view is not None
        assert view.token.revoked_at is None


async def test_a_large_revocation_is_notified_in_chunks(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,), listening(pg) as heard:
        app = await make_app(store)
        now, family = time.time(), str(uuid.uuid4())
        tokens = [
            await saved(store, mint(app.credential.id, now, family_id=family)) for _ in range(250)
        ]
        digests = {m.record.access_digest for m in tokens}
        assert await store.revoke_family(family, now) == 250
        assert set((await heard.wait_for(digests)).values()) == {1}
        ours = [p for p in heard.payloads if set(parse_notification(p)) <= digests]
        assert sorted(len(parse_notification(p)) for p in ours) == [50, 100, 100]


async def test_nothing_is_notified_or_logged_when_the_commit_fails(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn)) as (store,), listening(pg) as notified:
        app = await make_app(store)
        heard = Announcements()
        store.on_revoked(heard)
        token = await saved(store, mint(app.credential.id, time.time()))
        async with raw(pg) as conn:  # a check that fails at COMMIT, after the NOTIFY was queued
            await conn.execute(
                """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
                CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON revocations
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();"""
            )
            with pytest.raises(StoreError):
                await store.revoke_token(token.record.id, time.time())
            await asyncio.sleep(QUIET)
            assert notified.count([token.record.access_digest]) == {}
            assert heard.batches == []
            assert await store.revocations_since(0) == []
            assert await store.revocation_head() == 0
            view = await store.find_token(token.record.access_digest)
            assert view is not None
            assert view.token.revoked_at is None
            await conn.execute("DROP TRIGGER refuse ON revocations")
        assert await store.revoke_token(token.record.id, time.time())
        await notified.wait_for([token.record.access_digest])
        assert heard.digests == [token.record.access_digest]


def test_notify_payloads_roundtrip_under_the_size_limit() -> None:
    digests = [digest(str(i)) for i in range(250)]
    payloads = notify_payloads(digests)
    assert [len(parse_notification(p)) for p in payloads] == [100, 100, 50]
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [d for p in payloads for d in parse_notification(p)] == digests
    assert notify_payloads([]) == []


# the revocation log's order -------------------------------------------------------------------


async def test_a_log_writer_waits_for_an_earlier_one_to_commit(pg: PgSchema) -> None:
    """Seq order is commit order: a revocation that comes after a log writer still in flight
    commits after it, so no poller sees seq 2 while seq 1 is still to come."""
    async with opened(PostgresStore(pg.dsn)) as (store,):
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        early = digest("committed late")
        async with raw(pg) as conn:
            slow = conn.transaction()
            await slow.start()
            seq = await conn.fetchval("UPDATE revocation_head SET seq = seq + 1 RETURNING seq")
            await conn.execute(
                "INSERT INTO revocations (seq, access_digest, at) VALUES ($1, $2, $3)",
                seq,
                early,
                time.time(),
            )
            revoking = asyncio.create_task(store.revoke_token(token.record.id, time.time()))
            await asyncio.sleep(QUIET)
            assert not revoking.done()
            assert await store.revocations_since(0) == []
            assert await store.revocation_head() == 0
            await slow.commit()
        assert await asyncio.wait_for(revoking, 5) is True
        assert await store.revocations_since(0) == [(1, early), (2, token.record.access_digest)]


# session settings and pool ---------------------------------------------------------------------


async def test_statement_timeout_is_set(pg: PgSchema) -> None:
    plain = with_query(PG_DSN, options=f"-csearch_path={pg.name}")
    async with opened(
        PostgresStore(plain),
        PostgresStore(plain, statement_timeout_ms=250),
        PostgresStore(with_query(plain, statement_timeout="1234")),
    ) as stores:
        settings = [await store.diagnostics() for store in stores]
    assert [s["statement_timeout"] for s in settings] == ["5s", "250ms", "1234ms"]
    assert settings[0]["application_name"] == "edgeauth"


async def test_a_statement_stuck_on_a_lock_times_out_as_unavailable(pg: PgSchema) -> None:
    async with opened(PostgresStore(pg.dsn, statement_timeout_ms=200)) as (store,):
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        async with raw(pg) as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE", token.record.id)
            # the statement_timeout (200 ms) ends the wait, far inside pytest's own timeout
            with pytest.raises(StoreUnavailable):
                await store.revoke_token(token.record.id, time.time())
        assert await store.ping()
        assert await store.revoke_token(token.record.id, time.time())


async def test_pool_size_is_honoured(pg: PgSchema) -> None:
    name = f"{pg.name}_pool"
    dsn = with_query(PG_DSN, options=f"-csearch_path={pg.name}", application_name=name)

    async def connections() -> int:
        async with raw(pg) as conn:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            return int(await conn.fetchval(sql, name))

    async with opened(PostgresStore(dsn, pool_size=3)) as (store,):
        assert (await store.diagnostics())["pool_max_size"] == 3
        app = await make_app(store)
        token = await saved(store, mint(app.credential.id, time.time()))
        async with raw(pg) as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE", token.record.id)
            calls = [store.revoke_token(token.record.id, time.time()) for _ in range(8)]
            revoking = asyncio.gather(*calls)

            async def three_busy() -> bool:
                return await connections() == 3

            await wait_until(three_busy)
            await asyncio.sleep(QUIET)
            assert await connections() == 3
            assert not revoking.done()
        assert sorted(await asyncio.wait_for(revoking, 10)) == [False] * 7 + [True]


async def test_open_store_opens_postgres(pg: PgSchema) -> None:
    store = await open_store(StoreSettings(backend="postgres", dsn=pg.dsn, pool_size=2))
    try:
        assert isinstance(store, PostgresStore)
        assert await store.ping() is True
        assert (await store.diagnostics())["pool_max_size"] == 2
    finally:
        await store.close()
