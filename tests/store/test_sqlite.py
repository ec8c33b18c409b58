"""What only the SQLite backend promises: its pragmas, its schema version, its file modes."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgeauth.config import StoreSettings
from edgeauth.errors import StoreUnavailable
from edgeauth.store import open_store
from edgeauth.store.sql import INSERT_CONSUMER
from edgeauth.store.sqlite import MIGRATIONS, SQLiteStore
from tests.store.records import mint, new_credential


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "var" / "edgeauth.db", busy_timeout_ms=1234)
    await store.open()
    yield store
    await store.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _set_user_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {version}")
    db.close()


async def test_pragmas_in_effect(sqlite_store: SQLiteStore) -> None:
    assert await sqlite_store.diagnostics() == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,  # FULL: a revocation is durable once acknowledged
        "busy_timeout": 1234,
        "user_version": len(MIGRATIONS),
    }


async def test_files_are_private(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create_consumer("alice", None)  # a write makes the -wal file exist
    path = sqlite_store.path
    wal = path.with_name(path.name + "-wal")
    assert _mode(path) == 0o600
    assert wal.exists()
    assert _mode(wal) == 0o600


async def test_existing_file_at_version_zero_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "edgeauth.db"
    path.write_bytes(b"")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.diagnostics())["user_version"] == len(MIGRATIONS)
        assert (await store.create_consumer("alice", None)).username == "alice"
    finally:
        await store.close()


def _make_v2_with_a_token(path: Path, token_id: str, access_digest: bytes) -> None:
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute(INSERT_CONSUMER, ("k1", "old", None, "[]", 1))
        db.execute(
            "INSERT INTO credentials (id, consumer_id, name, client_id, client_type, created_at)"
            " VALUES ('c1', 'k1', 'app', 'client-1', 'public', 1)"
        )
        db.execute(
            "INSERT INTO tokens (id, access_digest, prefix, credential_id, scope, family_id,"
            " created_at) VALUES (?, ?, 'p', 'c1', 'read', 'f1', 1.0)",
            (token_id, access_digest),
        )
        db.execute(  # expired long ago: the sweep finds it by the index the migration adds
            "INSERT INTO tokens (id, access_digest, prefix, credential_id, scope, family_id,"
            " created_at, expires_at) VALUES ('dead', ?, 'p', 'c1', '', 'f2', 1.0, 2.0)",
            (bytes(32),),
        )
        db.execute("PRAGMA user_version = 2")
    db.close()


async def test_a_version_two_file_keeps_its_tokens_and_gains_refresh_scope_and_sweep_indexes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    old = mint("c1", time.time()).record
    await asyncio.to_thread(_make_v2_with_a_token, path, old.id, old.access_digest)
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.diagnostics())["user_version"] == len(MIGRATIONS) == 4
        assert await store.sweep(time.time()) == 1
        assert await store.find_token(bytes(32)) is None
        view = await store.find_token(old.access_digest)
        assert view is not None
        assert (view.token.id, view.token.scope, view.token.refresh_scope) == (old.id, "read", None)
        wider = replace(mint("c1", time.time()).record, scope="read", refresh_scope="read write")
        await store.save_token(wider)
        assert wider.refresh_digest is not None
        assert await store.find_refresh(wider.refresh_digest) == wider
    finally:
        await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edgeauth.db"
    await asyncio.to_thread(_set_user_version, path, len(MIGRATIONS) + 1)
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        await store.open()
    assert await store.ping() is False


async def test_a_directory_in_place_of_the_file_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    with pytest.raises(StoreUnavailable):
        await store.open()


async def test_open_store_opens_sqlite(tmp_path: Path) -> None:
    store = await open_store(StoreSettings(backend="sqlite", path=tmp_path / "s" / "e.db"))
    try:
        assert isinstance(store, SQLiteStore)
        assert await store.ping() is True
    finally:
        await store.close()


# identical reads waiting together share one execution ------------------------------------------
async def test_identical_reads_asked_together_all_get_the_answer_though_one_is_cancelled(
    sqlite_store: SQLiteStore,
) -> None:
    consumer = await sqlite_store.create_consumer("alice", None)
    credential = await sqlite_store.create_credential(new_credential(consumer.id))
    reads = [
        asyncio.ensure_future(sqlite_store.find_credential(credential.client_id)) for _ in range(20)
    ]
    await asyncio.sleep(0)  # all asked: the first's read is the one the others joined
    reads[0].cancel()
    assert await asyncio.gather(*reads[1:]) == [credential] * 19
    assert reads[0].cancelled()
    assert await sqlite_store.find_credential(credential.client_id) == credential


async def test_a_read_asked_after_a_write_sees_it_though_an_identical_one_asked_before_did_not(
    sqlite_store: SQLiteStore,
) -> None:
    consumer = await sqlite_store.create_consumer("alice", None)
    credential = await sqlite_store.create_credential(new_credential(consumer.id))
    before = asyncio.ensure_future(sqlite_store.find_credential(credential.client_id))
    await asyncio.sleep(0)
    changed = await sqlite_store.update_credential(credential.id, {"secret_hash": "$other"})
    assert changed is not None
    assert await sqlite_store.find_credential(credential.client_id) == changed
    assert await before == credential


async def test_every_reader_of_a_failed_shared_read_gets_the_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "edgeauth.db")
    await store.open()
    await store.close()
    results = await asyncio.gather(
        *(store.find_credential("client-1") for _ in range(5)), return_exceptions=True
    )
    assert [type(r) for r in results] == [StoreUnavailable] * 5
