"""The contract every Store backend passes (design §7, store/base.py rules 1 to 4).

Real databases only. Records come from the small factories below: uuid ids, SHA-256 digests of
raw values the test knows, so that "no raw token at rest" can be checked byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import pytest

from edgeauth.crypto import consumer_marker
from edgeauth.errors import ClientChanged, Conflict, StoreError, StoreUnavailable
from edgeauth.models import ClientType, Credential
from edgeauth.store.base import CredentialPatch, NewCredential, Store, TokenFilter
from edgeauth.store.core import SWEEP_BATCH
from tests.store.conftest import Database
from tests.store.records import (
    Announcements,
    App,
    Minted,
    auth_code,
    digest,
    hash_secret,
    mint,
    new_credential,
    saved,
)

T = TypeVar("T")


# lookups under load ------------------------------------------------------------------------
async def test_concurrent_lookups_of_distinct_tokens_each_get_their_own(
    store: Store, app: App
) -> None:
    """A flood of lookups (SQLite reads those waiting together): each caller gets its own
    token or None, whatever else was read beside it; the same digest twice, both."""
    now = time.time()
    minted = [await saved(store, mint(app.credential.id, now)) for _ in range(30)]
    unknown = [digest(secrets.token_urlsafe(16)) for _ in range(30)]
    asked = [m.record.access_digest for m in minted] + unknown + [minted[0].record.access_digest]
    order = list(range(len(asked)))
    secrets.SystemRandom().shuffle(order)
    found = await asyncio.gather(*(store.find_token(asked[i]) for i in order))
    by_digest = {asked[i]: view for i, view in zip(order, found, strict=True)}
    for m in minted:
        view = by_digest[m.record.access_digest]
        assert view is not None
        assert view.token.id == m.record.id
        assert view.client_id == app.credential.client_id
    assert all(by_digest[d] is None for d in unknown)


async def test_a_lookup_asked_after_a_save_sees_it_even_beside_others(
    store: Store, app: App
) -> None:
    now = time.time()
    first = mint(app.credential.id, now)
    before = asyncio.ensure_future(store.find_token(first.record.access_digest))
    await store.save_token(first.record)
    second = mint(app.credential.id, now)
    await store.save_token(second.record)
    after = await asyncio.gather(
        store.find_token(first.record.access_digest), store.find_token(second.record.access_digest)
    )
    await before  # asked before the save: either answer is right
    assert [v.token.id if v else None for v in after] == [first.record.id, second.record.id]


# issuance under load -----------------------------------------------------------------------
async def test_tokens_saved_at_once_all_land_and_a_duplicate_fails_alone(
    store: Store, app: App
) -> None:
    now = time.time()
    minted = [mint(app.credential.id, now) for _ in range(40)]
    clash = replace(mint(app.credential.id, now).record, id=minted[3].record.id)
    results = await asyncio.gather(
        *(store.save_token(m.record) for m in minted),
        store.save_token(clash),
        return_exceptions=True,
    )
    assert results[:40] == [None] * 40
    assert isinstance(results[40], Conflict)
    assert (results[40].table, results[40].column) == ("tokens", "id")
    for m in minted:
        found = await store.find_token(m.record.access_digest)
        assert found is not None
        assert found.token.id == m.record.id
    assert await store.find_token(clash.access_digest) is None


# saves checked against their client ---------------------------------------------------------
OTHER_SECRET = "$pbkdf2-sha512$i=1000,l=32$b3RoZXI$b3RoZXI"
ClientChange = Callable[[Store, App], Awaitable[object]]


async def _moved_to_another_consumer(store: Store, app: App) -> None:
    other = await store.create_consumer("bob", None)
    await store.upsert_credential(new_credential(other.id, client_id=app.credential.client_id))


# Changes to what a token is issued against: each must refuse a save checked before it.
TOKEN_CLIENT_CHANGES: dict[str, ClientChange] = {
    "secret": lambda s, a: s.update_credential(a.credential.id, {"secret_hash": OTHER_SECRET}),
    "public-without-secret": lambda s, a: s.update_credential(
        a.credential.id, {"secret_hash": None, "client_type": ClientType.PUBLIC}
    ),
    "type": lambda s, a: s.update_credential(a.credential.id, {"client_type": ClientType.PUBLIC}),
    "consumer": _moved_to_another_consumer,
    "deleted": lambda s, a: s.delete_credential(a.credential.id),
}
CODE_CLIENT_CHANGES: dict[str, ClientChange] = {
    **TOKEN_CLIENT_CHANGES,
    "redirect-uris": lambda s, a: s.update_credential(
        a.credential.id, {"redirect_uris": ("https://app.example/cb",)}
    ),
}


@pytest.mark.parametrize("change", list(TOKEN_CLIENT_CHANGES))
async def test_a_token_checked_against_a_client_that_changed_since_is_not_saved(
    store: Store, app: App, change: str
) -> None:
    await TOKEN_CLIENT_CHANGES[change](store, app)
    minted = mint(app.credential.id, time.time())
    with pytest.raises(ClientChanged):
        await store.save_token(minted.record, issued_to=app.credential)
    assert await store.find_token(minted.record.access_digest) is None
    assert minted.refresh is not None
    assert await store.find_refresh(digest(minted.refresh)) is None


@pytest.mark.parametrize("change", list(CODE_CLIENT_CHANGES))
async def test_a_code_checked_against_a_client_that_changed_since_is_not_saved(
    store: Store, app: App, change: str
) -> None:
    await CODE_CLIENT_CHANGES[change](store, app)
    now = time.time()
    raw, code = auth_code(app.credential.id, now)
    with pytest.raises(ClientChanged):
        await store.save_code(code, issued_to=app.credential)
    assert await store.take_code(digest(raw), now) is None


async def test_saves_checked_against_an_unchanged_client_land(store: Store, app: App) -> None:
    """Only owner, secret hash and type (and a code's redirect URIs) are checked; a secret
    hash that is None on both sides matches."""
    now = time.time()
    await store.update_credential(app.credential.id, {"name": "renamed", "tags": ("x",)})
    public = new_credential(app.consumer.id, secret_hash=None, client_type=ClientType.PUBLIC)
    for client in (app.credential, await store.create_credential(public)):
        minted = mint(client.id, now)
        await store.save_token(minted.record, issued_to=client)
        view = await store.find_token(minted.record.access_digest)
        assert view is not None
        assert view.token == minted.record
        raw, code = auth_code(client.id, now)
        await store.save_code(code, issued_to=client)
        assert await store.take_code(digest(raw), now) == code
    await store.update_credential(
        app.credential.id, {"client_id": "renamed", "redirect_uris": ("https://b.example/cb",)}
    )
    late = mint(app.credential.id, now)
    await store.save_token(late.record, issued_to=app.credential)
    assert await store.find_token(late.record.access_digest) is not None


async def test_issued_to_another_credential_is_the_callers_error(store: Store, app: App) -> None:
    other = await store.create_credential(new_credential(app.consumer.id))
    now = time.time()
    minted = mint(other.id, now)
    raw, code = auth_code(other.id, now)
    with pytest.raises(StoreError) as token_error:
        await store.save_token(minted.record, issued_to=app.credential)
    with pytest.raises(StoreError) as code_error:
        await store.save_code(code, issued_to=app.credential)
    assert type(token_error.value) is StoreError
    assert type(code_error.value) is StoreError
    assert await store.find_token(minted.record.access_digest) is None
    assert await store.take_code(digest(raw), now) is None


@pytest.mark.parametrize("with_duplicate", [False, True], ids=["batch", "row-by-row"])
async def test_tokens_saved_at_once_are_each_checked_against_their_client(
    store: Store, app: App, with_duplicate: bool
) -> None:
    """Saves that share a commit get their own outcomes, also when a duplicate sends the
    batch row by row."""
    now = time.time()
    stale = app.credential
    unchecked = await store.create_credential(new_credential(app.consumer.id))
    current = await store.update_credential(stale.id, {"secret_hash": OTHER_SECRET})
    assert current is not None
    plan: list[tuple[Minted, Credential | None]] = [
        pair
        for _ in range(10)
        for pair in (
            (mint(stale.id, now), stale),
            (mint(stale.id, now), current),
            (mint(unchecked.id, now), None),
        )
    ]
    clash = replace(mint(stale.id, now).record, id=plan[1][0].record.id)
    extra = [store.save_token(clash, issued_to=current)] if with_duplicate else []
    results = await asyncio.gather(
        *(store.save_token(m.record, issued_to=client) for m, client in plan),
        *extra,
        return_exceptions=True,
    )
    for (minted, client), result in zip(plan, results[: len(plan)], strict=True):
        found = await store.find_token(minted.record.access_digest)
        if client is stale:
            assert isinstance(result, ClientChanged)
            assert found is None
        else:
            assert result is None
            assert found is not None
    if with_duplicate:
        assert isinstance(results[-1], Conflict)


async def _after(seconds: float, call: Awaitable[T]) -> T:
    await asyncio.sleep(seconds)
    return await call


async def test_tokens_saved_while_the_secret_changes_never_outlive_it(
    store: Store, database: Database, app: App
) -> None:
    """The race an admin's new secret runs against token requests checked with the old one,
    on two stores (workers, nodes) at once: every token saved against an old secret is
    either refused or revoked by the change, whichever commits first."""
    other = database.make()
    await other.open()
    try:
        stores = (store, other)
        client = app.credential
        for round_ in range(5):
            now = time.time()
            early = mint(client.id, now)
            await stores[round_ % 2].save_token(early.record, issued_to=client)
            minted = [mint(client.id, now) for _ in range(40)]
            saves = [  # spread over 20 ms, the change in the middle
                _after(i / 2000, stores[i % 2].save_token(m.record, issued_to=client))
                for i, m in enumerate(minted)
            ]
            new_secret: CredentialPatch = {"secret_hash": hash_secret(f"secret {round_}")}
            change = _after(0.01, stores[round_ % 2].update_credential(client.id, new_secret))
            results = await asyncio.gather(*saves[:20], change, *saves[20:], return_exceptions=True)
            updated = results.pop(20)
            assert isinstance(updated, Credential)
            late = mint(client.id, now)
            with pytest.raises(ClientChanged):
                await stores[round_ % 2 - 1].save_token(late.record, issued_to=client)
            for one, result in [(early, None), *zip(minted, results, strict=True)]:
                view = await store.find_token(one.record.access_digest)
                if result is None:
                    assert view is not None
                    assert view.token.revoked_at is not None
                else:
                    assert isinstance(result, ClientChanged)
                    assert view is None
            client = updated
        live = TokenFilter(credential_id=app.credential.id, active=True)
        assert (await other.list_tokens(live, time.time())).items == ()
    finally:
        await other.close()


# consumers and credentials ----------------------------------------------------------------


async def test_consumer_crud(store: Store) -> None:
    consumer = await store.create_consumer("bob", "bob-7", ("a", "b"))
    assert (consumer.username, consumer.custom_id, consumer.tags) == ("bob", "bob-7", ("a", "b"))
    assert uuid.UUID(consumer.id).version == 4
    assert abs(consumer.created_at - time.time()) < 5
    assert await store.get_consumer(consumer.id) == consumer
    assert await store.get_consumer("bob") == consumer
    assert await store.get_consumer("nobody") is None
    assert await store.delete_consumer(consumer.id) is True
    assert await store.get_consumer(consumer.id) is None
    assert await store.delete_consumer(consumer.id) is False


async def test_consumer_with_custom_id_only(store: Store) -> None:
    consumer = await store.create_consumer(None, "ext-1")
    assert consumer.username is None
    assert await store.get_consumer(consumer.id) == consumer


@pytest.mark.parametrize(
    ("username", "custom_id", "taken"),
    [("alice", "other", "username"), ("other", "alice-1", "custom_id")],
)
async def test_duplicate_consumer_conflicts_naming_the_taken_column(
    store: Store, app: App, username: str, custom_id: str, taken: str
) -> None:
    with pytest.raises(Conflict) as caught:
        await store.create_consumer(username, custom_id)
    assert (caught.value.table, caught.value.column) == ("consumers", taken)
    assert caught.value.message == f"unique constraint failed: consumers.{taken}"


async def test_a_taken_consumer_id_conflicts_on_id(store: Store, app: App) -> None:
    with pytest.raises(Conflict) as caught:
        await store.create_consumer("other", None, id=app.consumer.id)
    assert (caught.value.table, caught.value.column) == ("consumers", "id")


async def test_upsert_consumer_is_idempotent(store: Store) -> None:
    first = await store.upsert_consumer("carol", "c-1", ("x",))
    assert await store.upsert_consumer("carol", "c-1", ("x",)) == first
    changed = await store.upsert_consumer("carol", "c-2", ("y",))
    assert (changed.id, changed.custom_id, changed.tags) == (first.id, "c-2", ("y",))
    assert await store.get_consumer("carol") == changed


async def test_upsert_consumer_with_taken_custom_id_conflicts(store: Store, app: App) -> None:
    with pytest.raises(Conflict) as caught:
        await store.upsert_consumer("dave", "alice-1")
    assert (caught.value.table, caught.value.column) == ("consumers", "custom_id")


async def test_credential_crud(store: Store, app: App) -> None:
    credential = app.credential
    assert credential.redirect_uris == ("https://app.example/cb", "https://app.example/cb2")
    assert credential.client_type is ClientType.CONFIDENTIAL
    assert credential.tags == ("seed", "test")
    assert await store.find_credential(credential.client_id) == credential
    assert await store.get_credential(credential.id) == credential
    assert await store.find_credential("unknown") is None
    assert await store.get_credential(str(uuid.uuid4())) is None
    assert await store.delete_credential(credential.id) is True
    assert await store.get_credential(credential.id) is None
    assert await store.delete_credential(credential.id) is False


async def test_duplicate_client_id_conflicts(store: Store, app: App) -> None:
    other = await store.create_consumer("eve", None)
    duplicate = new_credential(other.id, client_id=app.credential.client_id)
    with pytest.raises(Conflict) as caught:
        await store.create_credential(duplicate)
    assert (caught.value.table, caught.value.column) == ("credentials", "client_id")


async def test_credential_of_unknown_consumer_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        await store.create_credential(new_credential(str(uuid.uuid4())))
    assert type(caught.value) is StoreError  # neither Conflict nor StoreUnavailable


async def test_public_credential_roundtrip(store: Store, app: App) -> None:
    public = new_credential(app.consumer.id, secret_hash=None, client_type=ClientType.PUBLIC)
    credential = await store.create_credential(public)
    assert (credential.secret_hash, credential.client_type) == (None, ClientType.PUBLIC)


async def test_upsert_credential_is_idempotent(
    store: Store, app: App, heard: Announcements
) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    same = new_credential(app.consumer.id, client_id=app.credential.client_id)
    assert await store.upsert_credential(same) == app.credential
    renamed = await store.upsert_credential(replace(same, name="renamed", tags=("t",)))
    assert (renamed.id, renamed.name, renamed.tags) == (app.credential.id, "renamed", ("t",))
    assert renamed.created_at == app.credential.created_at
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is None
    assert heard.batches == []


async def test_upsert_credential_creates(store: Store, app: App) -> None:
    created = await store.upsert_credential(new_credential(app.consumer.id, client_id="fresh"))
    assert await store.find_credential("fresh") == created


@pytest.mark.parametrize(
    "change",
    [
        lambda c: replace(c, secret_hash="$pbkdf2-sha512$i=1000,l=32$b3RoZXI$b3RoZXI"),
        lambda c: replace(c, client_type=ClientType.PUBLIC, secret_hash=None),
        lambda c: replace(c, client_type=ClientType.PUBLIC),
    ],
    ids=["secret", "public-without-secret", "type"],
)
async def test_upsert_credential_with_new_secret_or_type_revokes(
    store: Store, app: App, heard: Announcements, change: Callable[[NewCredential], NewCredential]
) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    same = new_credential(app.consumer.id, client_id=app.credential.client_id)
    updated = await store.upsert_credential(change(same))
    assert updated.id == app.credential.id
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is not None
    assert heard.digests == [token.record.access_digest]


# tokens -----------------------------------------------------------------------------------


async def test_find_token_joins_credential_and_consumer(store: Store, app: App) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token == token.record
    assert (view.client_id, view.consumer_id) == (app.credential.client_id, app.consumer.id)
    assert (view.username, view.custom_id) == ("alice", "alice-1")
    assert await store.find_token(digest("unknown")) is None


async def test_find_token_returns_dead_tokens_too(store: Store, app: App) -> None:
    now = time.time()
    expired = await saved(store, mint(app.credential.id, now - 7200, expires_in=10))
    revoked = await saved(store, mint(app.credential.id, now, revoked_at=now))
    for minted in (expired, revoked):
        view = await store.find_token(minted.record.access_digest)
        assert view is not None
        assert view.token == minted.record


async def test_token_without_expiry_or_refresh(store: Store, app: App) -> None:
    token = mint(app.credential.id, time.time(), refresh=False, expires_in=None)
    await store.save_token(replace(token.record, service=None, authenticated_userid=None))
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert (view.token.expires_at, view.token.refresh_digest, view.token.service) == (
        None,
        None,
        None,
    )


async def test_duplicate_token_digest_conflicts(store: Store, app: App) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    with pytest.raises(Conflict) as caught:
        await store.save_token(replace(token.record, id=str(uuid.uuid4()), refresh_digest=None))
    assert (caught.value.table, caught.value.column) == ("tokens", "access_digest")


async def test_find_refresh(store: Store, app: App) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    assert token.refresh is not None
    assert await store.find_refresh(digest(token.refresh)) == token.record
    assert await store.find_refresh(digest("unknown")) is None


async def test_refresh_scope_is_kept_through_save_find_and_rotate(store: Store, app: App) -> None:
    now = time.time()
    old = mint(app.credential.id, now - 60)
    narrowed = replace(old.record, scope="read", refresh_scope="read write")
    await store.save_token(narrowed)
    assert old.refresh is not None
    assert await store.find_refresh(digest(old.refresh)) == narrowed
    view = await store.find_token(narrowed.access_digest)
    assert view is not None
    assert view.token.refresh_scope == "read write"
    new = mint(app.credential.id, now, family_id=narrowed.family_id)
    successor = replace(new.record, scope="read", refresh_scope="read write admin")
    retired = await store.rotate_refresh(digest(old.refresh), successor, now)
    assert retired == replace(narrowed, revoked_at=now, refresh_used_at=now)
    assert new.refresh is not None
    assert await store.find_refresh(digest(new.refresh)) == successor


async def test_rotate_refresh_retires_the_old_row_once(
    store: Store, app: App, heard: Announcements
) -> None:
    now = time.time()
    old = await saved(store, mint(app.credential.id, now - 60))
    assert old.refresh is not None
    new = mint(app.credential.id, now, family_id=old.record.family_id)
    retired = await store.rotate_refresh(digest(old.refresh), new.record, now)
    assert retired == replace(old.record, revoked_at=now, refresh_used_at=now)
    assert heard.batches == [(old.record.access_digest,)]
    view = await store.find_token(new.record.access_digest)
    assert view is not None
    assert view.token == new.record
    assert await store.find_refresh(digest(old.refresh)) == retired
    again = mint(app.credential.id, now, family_id=old.record.family_id)
    assert await store.rotate_refresh(digest(old.refresh), again.record, now) is None
    assert await store.find_token(again.record.access_digest) is None


async def test_rotate_refresh_refuses_dead_or_unknown_rows(store: Store, app: App) -> None:
    now = time.time()
    expired = await saved(store, mint(app.credential.id, now - 100, refresh_expires_in=50))
    revoked = await saved(store, mint(app.credential.id, now - 100, revoked_at=now - 10))
    for refresh in (expired.refresh, revoked.refresh, "unknown"):
        assert refresh is not None
        new = mint(app.credential.id, now)
        assert await store.rotate_refresh(digest(refresh), new.record, now) is None
        assert await store.find_token(new.record.access_digest) is None


@pytest.mark.parametrize("refresh_expires_in", [None, 86400.0])
async def test_rotate_refresh_after_the_access_token_expired(
    store: Store, app: App, refresh_expires_in: float | None
) -> None:
    now = time.time()
    old = mint(app.credential.id, now - 7200, expires_in=60, refresh_expires_in=refresh_expires_in)
    await saved(store, old)
    assert old.refresh is not None
    new = mint(app.credential.id, now)
    assert await store.rotate_refresh(digest(old.refresh), new.record, now) is not None


async def rotate_race(stores: Sequence[Store], app: App, refresh: str, now: float) -> int:
    """Rotates one refresh token from 50 concurrent callers; returns how many won."""
    news = [mint(app.credential.id, now) for _ in range(50)]
    results = await asyncio.gather(
        *(
            stores[i % len(stores)].rotate_refresh(digest(refresh), new.record, now)
            for i, new in enumerate(news)
        )
    )
    found = [await stores[0].find_token(new.record.access_digest) for new in news]
    assert sum(view is not None for view in found) == 1
    return sum(result is not None for result in results)


async def test_rotate_refresh_concurrently_has_one_winner(store: Store, app: App) -> None:
    old = await saved(store, mint(app.credential.id, time.time()))
    assert old.refresh is not None
    assert await rotate_race([store], app, old.refresh, time.time()) == 1


async def test_rotate_refresh_across_two_stores_has_one_winner(
    store: Store, database: Database, app: App
) -> None:
    other = database.make()
    await other.open()
    try:
        old = await saved(store, mint(app.credential.id, time.time()))
        assert old.refresh is not None
        assert await rotate_race([store, other], app, old.refresh, time.time()) == 1
    finally:
        await other.close()


async def test_replace_access_keeps_the_refresh_token(
    store: Store, app: App, heard: Announcements
) -> None:
    now = time.time()
    old = await saved(store, mint(app.credential.id, now - 60))
    assert old.refresh is not None
    fresh = secrets.token_urlsafe(32)
    updated = await store.replace_access(
        digest(old.refresh), digest(fresh), fresh[:6], now + 3600, now
    )
    expected = replace(
        old.record, access_digest=digest(fresh), prefix=fresh[:6], expires_at=now + 3600
    )
    assert updated == replace(expected, created_at=now)
    assert heard.batches == [(old.record.access_digest,)]
    assert await store.find_token(old.record.access_digest) is None
    view = await store.find_token(digest(fresh))
    assert view is not None
    assert view.token == updated
    again = secrets.token_urlsafe(32)
    assert await store.replace_access(digest(old.refresh), digest(again), "x", None, now)


async def test_replace_access_refuses_dead_or_unknown_rows(store: Store, app: App) -> None:
    now = time.time()
    revoked = await saved(store, mint(app.credential.id, now, revoked_at=now))
    expired = await saved(store, mint(app.credential.id, now - 100, refresh_expires_in=50))
    for refresh in (revoked.refresh, expired.refresh, "unknown"):
        assert refresh is not None
        fresh = digest(secrets.token_urlsafe(32))
        assert await store.replace_access(digest(refresh), fresh, "p", None, now) is None
        assert await store.find_token(fresh) is None


async def test_revoke_family_revokes_every_live_member(
    store: Store, app: App, heard: Announcements
) -> None:
    now, family = time.time(), str(uuid.uuid4())
    live = [
        await saved(store, mint(app.credential.id, now, family_id=family)),
        await saved(store, mint(app.credential.id, now, family_id=family)),
        await saved(store, mint(app.credential.id, now - 7200, family_id=family, expires_in=60)),
    ]
    await saved(store, mint(app.credential.id, now, family_id=family, revoked_at=now - 5))
    stranger = await saved(store, mint(app.credential.id, now))
    assert await store.revoke_family(family, now) == 3
    assert sorted(heard.digests) == sorted(m.record.access_digest for m in live)
    for minted in live:
        view = await store.find_token(minted.record.access_digest)
        assert view is not None
        assert view.token.revoked_at == now
    view = await store.find_token(stranger.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is None
    assert await store.revoke_family(family, now) == 0
    assert len(heard.batches) == 1


async def test_revoke_token(store: Store, app: App, heard: Announcements) -> None:
    now = time.time()
    token = await saved(store, mint(app.credential.id, now))
    assert await store.revoke_token(token.record.id, now) is True
    assert await store.revoke_token(token.record.id, now) is False
    assert await store.revoke_token(str(uuid.uuid4()), now) is False
    assert heard.batches == [(token.record.access_digest,)]
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token.revoked_at == now


async def test_a_cancelled_revocation_still_completes_and_announces(
    store: Store, app: App, heard: Announcements
) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    task = asyncio.create_task(store.revoke_token(token.record.id, time.time()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    view = await store.find_token(token.record.access_digest)  # queued behind the revocation
    assert view is not None
    assert view.token.revoked_at is not None
    assert heard.digests == [token.record.access_digest]


async def test_a_failing_listener_does_not_break_revocation(
    store: Store, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(digests: Sequence[bytes]) -> None:
        raise RuntimeError("listener bug")

    store.on_revoked(broken)
    after = Announcements()
    store.on_revoked(after)
    token = await saved(store, mint(app.credential.id, time.time()))
    with caplog.at_level(logging.ERROR):
        assert await store.revoke_token(token.record.id, time.time()) is True
    assert after.digests == [token.record.access_digest]
    assert any(record.exc_info for record in caplog.records)
    assert await store.ping() is True


# authorization codes ------------------------------------------------------------------------


async def test_take_code_once(store: Store, app: App) -> None:
    now = time.time()
    raw, code = auth_code(app.credential.id, now)
    await store.save_code(code)
    assert await store.take_code(digest(raw), now) == code
    assert await store.take_code(digest(raw), now) is None


async def test_take_code_concurrently_has_one_winner(store: Store, app: App) -> None:
    now = time.time()
    raw, code = auth_code(app.credential.id, now)
    await store.save_code(code)
    results = await asyncio.gather(*(store.take_code(digest(raw), now) for _ in range(50)))
    assert [result for result in results if result is not None] == [code]


async def test_expired_code_is_not_taken(store: Store, app: App) -> None:
    now = time.time()
    raw, code = auth_code(app.credential.id, now - 120, expires_in=60)
    await store.save_code(code)
    assert await store.take_code(digest(raw), now) is None
    assert await store.take_code(digest(raw), now - 100) is None  # consumed by the attempt


async def test_duplicate_code_conflicts(store: Store, app: App) -> None:
    _, code = auth_code(app.credential.id, time.time())
    await store.save_code(code)
    with pytest.raises(Conflict) as caught:
        await store.save_code(code)
    assert (caught.value.table, caught.value.column) == ("codes", "digest")


# deletion cascades --------------------------------------------------------------------------


async def test_delete_consumer_cascades_and_announces(
    store: Store, app: App, heard: Announcements
) -> None:
    now = time.time()
    live = await saved(store, mint(app.credential.id, now))
    dead = await saved(store, mint(app.credential.id, now, revoked_at=now))
    raw, code = auth_code(app.credential.id, now)
    await store.save_code(code)
    assert await store.delete_consumer(app.consumer.id) is True
    assert heard.batches == [(live.record.access_digest, consumer_marker(app.consumer.id))]
    assert await store.get_credential(app.credential.id) is None
    assert await store.find_token(live.record.access_digest) is None
    assert await store.find_token(dead.record.access_digest) is None
    assert await store.take_code(digest(raw), now) is None


async def test_delete_credential_cascades_and_announces(
    store: Store, app: App, heard: Announcements
) -> None:
    now = time.time()
    kept_credential = await store.create_credential(new_credential(app.consumer.id))
    kept = await saved(store, mint(kept_credential.id, now))
    gone = await saved(store, mint(app.credential.id, now))
    assert await store.delete_credential(app.credential.id) is True
    assert heard.batches == [(gone.record.access_digest,)]
    assert await store.find_token(gone.record.access_digest) is None
    assert await store.find_token(kept.record.access_digest) is not None
    assert await store.get_consumer(app.consumer.id) == app.consumer


# housekeeping -------------------------------------------------------------------------------


async def test_sweep_deletes_dead_rows_only(store: Store, app: App) -> None:
    now, day, cid = time.time(), 86400.0, app.credential.id
    keep = [
        await saved(store, mint(cid, now)),  # live
        await saved(
            store, mint(cid, now - day, expires_in=60, refresh_expires_in=None)
        ),  # refreshable
        await saved(store, mint(cid, now - day, expires_in=60, refresh_expires_in=2 * day)),
        await saved(store, mint(cid, now, revoked_at=now - 60)),  # revoked within the grace
        await saved(store, mint(cid, now - day, refresh=False, expires_in=day - 60)),  # in grace
        await saved(store, mint(cid, now, expires_in=None, refresh=False)),  # never expires
    ]
    drop = [
        await saved(store, mint(cid, now - day, refresh=False, expires_in=60)),
        await saved(store, mint(cid, now - day, expires_in=60, refresh_expires_in=120)),
        await saved(store, mint(cid, now, revoked_at=now - 7200)),
    ]
    raw_live, live_code = auth_code(cid, now)
    _, old_code = auth_code(cid, now - 600)
    await store.save_code(live_code)
    await store.save_code(old_code)
    assert await store.sweep(now, grace_seconds=3600) == len(drop) + 1
    for minted in keep:
        assert await store.find_token(minted.record.access_digest) is not None
    for minted in drop:
        assert await store.find_token(minted.record.access_digest) is None
    assert await store.take_code(digest(raw_live), now) == live_code
    assert await store.sweep(now, grace_seconds=3600) == 0


async def test_sweep_goes_batch_by_batch_until_no_dead_row_is_left(store: Store, app: App) -> None:
    now, cid = time.time(), app.credential.id
    dead = 2 * SWEEP_BATCH + 7
    expired = [mint(cid, now - 7200, refresh=False, expires_in=60) for _ in range(dead)]
    revoked = [mint(cid, now, revoked_at=now - 7200) for _ in range(SWEEP_BATCH)]
    live = [mint(cid, now - 7200, expires_in=60, refresh_expires_in=86400) for _ in range(3)]
    records = [m.record for m in (*expired, *revoked, *live)]
    assert await store.import_tokens(records) == len(records)
    assert await store.sweep(now, grace_seconds=3600) == dead + SWEEP_BATCH
    left = await store.list_tokens(TokenFilter(), now, size=10)
    assert sorted(view.token.id for view in left.items) == sorted(m.record.id for m in live)


# rules 1 and 4 ------------------------------------------------------------------------------


async def test_no_raw_token_code_or_secret_at_rest(
    store: Store, database: Database, app: App
) -> None:
    now, secret = time.time(), secrets.token_urlsafe(24)
    confidential = new_credential(app.consumer.id, secret_hash=hash_secret(secret))
    credential = await store.create_credential(confidential)
    first = await saved(store, mint(credential.id, now - 10))
    rotated = mint(credential.id, now, family_id=first.record.family_id)
    assert first.refresh is not None
    assert await store.rotate_refresh(digest(first.refresh), rotated.record, now)
    assert rotated.refresh is not None
    replacement = secrets.token_urlsafe(32)
    await store.replace_access(digest(rotated.refresh), digest(replacement), "r", None, now)
    raw_code, code = auth_code(credential.id, now)
    await store.save_code(code)
    raws = [first.access, first.refresh, rotated.access, rotated.refresh, replacement, raw_code]
    for data in (await database.at_rest(), await _after_close(store, database)):
        assert digest(replacement) in data  # the check reads the real data
        for raw in [*raws, secret]:
            assert raw.encode() not in data


async def _after_close(store: Store, database: Database) -> bytes:
    await store.close()
    return await database.at_rest()


async def test_unreachable_database_raises_store_unavailable(database: Database) -> None:
    store = database.unreachable()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert await store.ping() is False
    await store.close()


async def test_closed_store_raises_store_unavailable(store: Store, app: App) -> None:
    await store.close()
    assert await store.ping() is False
    with pytest.raises(StoreUnavailable):
        await store.get_consumer("alice")
    with pytest.raises(StoreUnavailable):
        await store.create_consumer("zed", None)
    with pytest.raises(StoreUnavailable):
        await store.revoke_family("family", time.time())
    with pytest.raises(StoreUnavailable):
        await store.take_code(digest("code"), time.time())


# opening and migrations ---------------------------------------------------------------------


async def test_reopening_is_idempotent(database: Database) -> None:
    first = database.make()
    await first.open()
    await first.open()
    consumer = await first.create_consumer("frank", None)
    await first.close()
    second = database.make()
    await second.open()
    try:
        assert await second.get_consumer("frank") == consumer
    finally:
        await second.close()


async def test_two_stores_open_a_new_database_at_once(database: Database) -> None:
    a, b = database.make(), database.make()
    await asyncio.gather(a.open(), b.open())
    try:
        from_a = await a.create_consumer("from-a", None)
        from_b = await b.create_consumer("from-b", None)
        assert await b.get_consumer("from-a") == from_a
        assert await a.get_consumer("from-b") == from_b
        assert await a.ping()
        assert await b.ping()
    finally:
        await a.close()
        await b.close()
