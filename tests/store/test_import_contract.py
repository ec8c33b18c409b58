"""The contract of what a migration from Kong needs, on every backend: ids and creation times
kept on create, and the bulk, idempotent token import."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from edgeauth.errors import Conflict, StoreError
from edgeauth.store.base import Store, TokenFilter
from tests.store.records import Announcements, App, digest, mint, new_credential

KONG_ID = "4e8d95d4-40f2-4818-adcb-30e00c349618"
LONG_AGO = 1_500_000_000


# ids and creation times ---------------------------------------------------------------------
async def test_a_consumer_keeps_the_id_and_creation_time_it_is_given(store: Store) -> None:
    made = await store.create_consumer("kong-user", "k-1", ("kong",), id=KONG_ID, created_at=42)
    assert (made.id, made.created_at) == (KONG_ID, 42)
    found = await store.get_consumer(KONG_ID)
    assert found == made
    fresh = await store.create_consumer("new-user", None)
    assert fresh.id != KONG_ID
    assert abs(fresh.created_at - time.time()) < 5
    page = await store.list_consumers()
    assert [c.id for c in page.items] == [KONG_ID, fresh.id]  # oldest first, by the kept time


async def test_a_consumer_id_already_taken_is_a_conflict_and_changes_nothing(store: Store) -> None:
    first = await store.create_consumer("first", None, id=KONG_ID, created_at=LONG_AGO)
    with pytest.raises(Conflict):
        await store.create_consumer("second", None, id=KONG_ID)
    assert await store.get_consumer(KONG_ID) == first
    assert await store.get_consumer("second") is None


async def test_a_credential_keeps_the_id_and_creation_time_it_is_given(
    store: Store, app: App
) -> None:
    new = replace(new_credential(app.consumer.id), id=KONG_ID, created_at=LONG_AGO)
    made = await store.create_credential(new)
    assert (made.id, made.created_at, made.client_id) == (KONG_ID, LONG_AGO, new.client_id)
    assert await store.get_credential(KONG_ID) == made
    assert await store.find_credential(new.client_id) == made
    taken = replace(new_credential(app.consumer.id), id=KONG_ID)
    with pytest.raises(Conflict):
        await store.create_credential(taken)
    assert await store.find_credential(taken.client_id) is None


async def test_an_upsert_that_creates_keeps_the_given_id_and_one_that_updates_keeps_its_own(
    store: Store, app: App
) -> None:
    new = replace(new_credential(app.consumer.id), id=KONG_ID, created_at=LONG_AGO)
    created = await store.upsert_credential(new)
    assert (created.id, created.created_at) == (KONG_ID, LONG_AGO)
    other_id = str(uuid.uuid4())
    updated = await store.upsert_credential(replace(new, id=other_id, created_at=7, name="x"))
    assert (updated.id, updated.created_at, updated.name) == (KONG_ID, LONG_AGO, "x")
    assert await store.get_credential(other_id) is None


# bulk token import --------------------------------------------------------------------------
async def test_imported_tokens_are_found_by_access_and_refresh_digest(
    store: Store, app: App, heard: Announcements
) -> None:
    now = time.time()
    minted = [mint(app.credential.id, now) for _ in range(30)]
    assert await store.import_tokens([m.record for m in minted]) == 30
    for m in minted:
        view = await store.find_token(digest(m.access))
        assert view is not None
        assert view.token == m.record
        assert view.client_id == app.credential.client_id
        assert m.refresh is not None
        assert await store.find_refresh(digest(m.refresh)) == m.record
    assert heard.batches == []  # an import makes no cached copy stale


async def test_an_import_run_again_inserts_nothing_and_changes_nothing(
    store: Store, app: App
) -> None:
    now = time.time()
    records = [mint(app.credential.id, now).record for _ in range(20)]
    assert await store.import_tokens(records) == 20
    revoked = records[0]
    assert await store.revoke_token(revoked.id, now)
    assert await store.import_tokens(records) == 0
    view = await store.get_token(revoked.id)
    assert view is not None
    assert view.token.revoked_at == now  # not brought back by the second run
    listed = await store.list_tokens(TokenFilter(), now, size=100)
    assert len(listed.items) == 20


async def test_an_import_skips_records_clashing_on_id_or_either_digest_and_keeps_the_rest(
    store: Store, app: App
) -> None:
    now = time.time()
    stored = mint(app.credential.id, now).record
    await store.save_token(stored)
    assert stored.refresh_digest is not None
    same_id = replace(mint(app.credential.id, now).record, id=stored.id)
    same_access = replace(mint(app.credential.id, now).record, access_digest=stored.access_digest)
    same_refresh = replace(
        mint(app.credential.id, now).record, refresh_digest=stored.refresh_digest
    )
    fine = mint(app.credential.id, now, refresh=False).record
    twin = replace(fine, id=str(uuid.uuid4()))  # the same access digest within the import
    batch = [same_id, same_access, fine, same_refresh, twin]
    assert await store.import_tokens(batch) == 1
    kept, landed = await store.get_token(stored.id), await store.get_token(fine.id)
    assert kept is not None
    assert kept.token == stored
    assert landed is not None
    assert landed.token == fine
    for skipped in (same_access, same_refresh, twin):
        assert await store.get_token(skipped.id) is None


async def test_an_import_larger_than_one_transaction_lands_whole(store: Store, app: App) -> None:
    now = time.time()
    records = [mint(app.credential.id, now).record for _ in range(12_345)]
    assert await store.import_tokens(records) == 12_345
    assert await store.import_tokens(records[-100:]) == 0
    assert await store.import_tokens([]) == 0
    for record in (records[0], records[5000], records[-1]):
        view = await store.find_token(record.access_digest)
        assert view is not None
        assert view.token == record


async def test_an_imported_refresh_token_rotates_once(store: Store, app: App) -> None:
    now = time.time()
    imported = mint(app.credential.id, now - 3000, refresh_expires_in=None)
    await store.import_tokens([imported.record])
    assert imported.refresh is not None
    successor = mint(app.credential.id, now, family_id=imported.record.family_id).record
    retired = await store.rotate_refresh(digest(imported.refresh), successor, now)
    assert retired is not None
    assert retired.id == imported.record.id
    again = mint(app.credential.id, now).record
    assert await store.rotate_refresh(digest(imported.refresh), again, now) is None


async def test_an_import_for_an_unknown_credential_is_refused_with_a_store_error(
    store: Store,
) -> None:
    record = mint(str(uuid.uuid4()), time.time()).record
    with pytest.raises(StoreError):
        await store.import_tokens([record])
    assert await store.find_token(record.access_digest) is None
