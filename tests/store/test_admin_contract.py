"""The admin part of the Store contract: lists and pages, updates, bulk revocation, and the
revocation log other processes poll (design §6, §7, §8; store/base.py).

Real databases only, through the `store` fixture; the factories are the contract suite's.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from edgeauth.crypto import consumer_marker
from edgeauth.errors import Conflict, StoreError
from edgeauth.models import ClientType, Consumer, Credential
from edgeauth.store.base import (
    ConsumerPatch,
    CredentialPatch,
    Page,
    Store,
    TagFilter,
    TokenFilter,
)
from edgeauth.store.sqlite import MIGRATIONS, SQLiteStore
from tests.store.conftest import Database
from tests.store.records import (
    Announcements,
    App,
    Minted,
    auth_code,
    digest,
    mint,
    new_credential,
    saved,
)

T = TypeVar("T")
OTHER_SECRET = "$pbkdf2-sha512$i=1000,l=32$b3RoZXI$b3RoZXI"


async def walk(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[Page[T]]:
    """Every page of a list, following `next` until it is None."""
    pages = [await fetch(None)]
    while pages[-1].next is not None:
        assert len(pages) < 10_000, "the cursor does not advance"
        pages.append(await fetch(pages[-1].next))
    return pages


def items(pages: Sequence[Page[T]]) -> list[T]:
    return [item for page in pages for item in page.items]


async def killed_by(store: Store, call: Awaitable[object]) -> list[bytes]:
    """The digests `call` appended to the revocation log (checking seqs run on from the head)."""
    head = await store.revocation_head()
    await call
    entries = await store.revocations_since(head)
    assert [seq for seq, _ in entries] == list(range(head + 1, head + 1 + len(entries)))
    assert await store.revocation_head() == head + len(entries)
    return [d for _, d in entries]


def token_ids(views: Sequence[Any]) -> set[str]:
    return {view.token.id for view in views}


# pagination ---------------------------------------------------------------------------------


async def _consumers(store: Store, size: int, after: str | None) -> Page[Consumer]:
    return await store.list_consumers(after=after, size=size)


async def test_consumer_pages_walk_every_entry_exactly_once_in_order(store: Store) -> None:
    created = [await store.create_consumer(f"user-{i:04}", None) for i in range(2500)]
    expected = sorted(created, key=lambda c: (c.created_at, c.id))
    for size in (100, 1000, 7):
        pages = await walk(functools.partial(_consumers, store, size))
        assert items(pages) == expected
        assert len(pages) == math.ceil(2500 / size)  # no trailing empty page
        assert all(len(page.items) == size for page in pages[:-1])
        assert pages[-1].items
        assert all(isinstance(page.next, str) for page in pages[:-1])


async def test_empty_and_single_page_lists_have_no_next(store: Store) -> None:
    assert await store.list_consumers() == Page(items=(), next=None)
    assert await store.list_credentials() == Page(items=(), next=None)
    assert await store.list_tokens(TokenFilter(), time.time()) == Page(items=(), next=None)
    first = await store.create_consumer("one", None)
    second = await store.create_consumer("two", None)
    page = await store.list_consumers(size=2)
    assert (set(page.items), page.next) == ({first, second}, None)


async def test_rows_added_during_a_walk_never_repeat_or_hide_older_ones(store: Store) -> None:
    """Keyset pages: a row added mid-walk appears at most once (whether it sorts before or
    after the cursor), and every row that existed before the walk appears exactly once."""
    existing = {await store.create_consumer(f"u{i}", None) for i in range(5)}
    first = await store.list_consumers(size=2)
    late = await store.create_consumer("late", None)
    assert first.next is not None
    after: str | None = first.next
    walked = list(first.items)
    while after is not None:
        page = await store.list_consumers(after=after, size=2)
        walked += page.items
        after = page.next
    assert len(walked) == len(set(walked))
    assert set(walked) - {late} == existing


async def test_token_pages_order_by_created_at_then_id(store: Store, app: App) -> None:
    now = time.time()
    tied = [await saved(store, mint(app.credential.id, now + 0.123456789)) for _ in range(5)]
    older = await saved(store, mint(app.credential.id, now - 1.5))
    newer = await saved(store, mint(app.credential.id, now + 2.25))
    pages = await walk(
        lambda after: store.list_tokens(TokenFilter(), now, after=after, size=2),
    )
    order = [view.token.id for view in items(pages)]
    ties = sorted(minted.record.id for minted in tied)
    assert order == [older.record.id, *ties, newer.record.id]
    assert len(pages) == 4


async def test_credential_pages(store: Store, app: App) -> None:
    made = [app.credential]
    made += [await store.create_credential(new_credential(app.consumer.id)) for _ in range(6)]
    pages = await walk(lambda after: store.list_credentials(after=after, size=3))
    assert items(pages) == sorted(made, key=lambda c: (c.created_at, c.id))
    assert [len(page.items) for page in pages] == [3, 3, 1]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MALFORMED = [
    "",
    "not a cursor!",
    "é",
    "x" * 5000,
    _b64(b"\xff\xfe"),
    _b64(b"{}"),
    _b64(b"[]"),
    _b64(b"[1]"),
    _b64(b'"ab"'),
    _b64(b'[1, "a", 2]'),
    _b64(b'["1", "a"]'),
    _b64(b"[1, 2]"),
    _b64(b'[true, "a"]'),
    _b64(b'[null, "a"]'),
    _b64(b'[NaN, "a"]'),
    _b64(b'[1e999, "a"]'),
    _b64(b'[99999999999999999999999, "a"]'),
    _b64(b'[1, "\\ud800"]'),
]


@pytest.mark.parametrize("cursor", MALFORMED)
async def test_malformed_cursor_is_a_store_error(store: Store, app: App, cursor: str) -> None:
    lists: list[Callable[[], Awaitable[object]]] = [
        lambda: store.list_consumers(after=cursor),
        lambda: store.list_credentials(after=cursor),
        lambda: store.list_tokens(TokenFilter(), time.time(), after=cursor),
    ]
    for call in lists:
        with pytest.raises(StoreError) as caught:
            await call()
        assert type(caught.value) is StoreError  # the caller's input: neither 409 nor 503
    assert await store.ping() is True


# tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (TagFilter(("b",)), {"ab", "bc"}),
        (TagFilter(("a", "b")), {"ab"}),
        (TagFilter(("b", "a", "b")), {"ab"}),
        (TagFilter(("a", "c")), set()),
        (TagFilter(("a", "c"), any=True), {"ab", "bc", "c"}),
        (TagFilter(("c",), any=True), {"bc", "c"}),
        (TagFilter(("x", "y"), any=True), set()),
        (TagFilter(("x",)), set()),
        (TagFilter(()), {"ab", "bc", "c", "none"}),
        (None, {"ab", "bc", "c", "none"}),
    ],
)
async def test_tag_filters(store: Store, tags: TagFilter | None, expected: set[str]) -> None:
    owner = await store.create_consumer("owner", None, ("owner",))
    for name, given in [("ab", ("a", "b")), ("bc", ("b", "c")), ("c", ("c",)), ("none", ())]:
        await store.create_consumer(name, None, given)
        await store.create_credential(replace(new_credential(owner.id, name=name), tags=given))
    consumers = await walk(lambda after: store.list_consumers(tags=tags, after=after, size=1))
    names = {c.username for c in items(consumers)} - {"owner"}
    assert names == expected
    credentials = await walk(lambda after: store.list_credentials(tags=tags, after=after, size=1))
    assert {c.name for c in items(credentials)} == expected


async def test_tags_match_whole_values(store: Store) -> None:
    await store.create_consumer("x", None, ("prod-eu", "2"))
    assert (await store.list_consumers(tags=TagFilter(("prod",)))).items == ()
    assert (await store.list_consumers(tags=TagFilter(("2",)))).items != ()


async def test_credentials_of_one_consumer_only(store: Store, app: App) -> None:
    other = await store.create_consumer("other", None)
    mine = [app.credential]
    mine += [await store.create_credential(new_credential(app.consumer.id)) for _ in range(3)]
    for _ in range(3):
        await store.create_credential(new_credential(other.id))
    pages = await walk(
        lambda after: store.list_credentials(consumer_id=app.consumer.id, after=after, size=2)
    )
    assert items(pages) == sorted(mine, key=lambda c: (c.created_at, c.id))
    tagged = await store.list_credentials(consumer_id=other.id, tags=TagFilter(("seed", "test")))
    assert len(tagged.items) == 3
    assert (await store.list_credentials(consumer_id=str(uuid.uuid4()))).items == ()


# tokens: list and get -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """Tokens of two users across two consumers, three credentials and two services."""

    now: float
    alice: App
    bob: App
    alice_second: Credential
    tokens: dict[str, Minted]


@pytest.fixture
async def fleet(store: Store, app: App) -> Fleet:
    now = time.time()
    bob_consumer = await store.create_consumer("bob", None)
    bob = App(bob_consumer, await store.create_credential(new_credential(bob_consumer.id)))
    second = await store.create_credential(new_credential(app.consumer.id))

    async def put(name: str, minted: Minted, **changes: Any) -> tuple[str, Minted]:
        record = replace(minted.record, **changes)
        await store.save_token(record)
        return name, replace(minted, record=record)

    tokens = dict(
        [
            await put("a_live", mint(app.credential.id, now - 10)),
            await put("a_forever", mint(app.credential.id, now - 9, expires_in=None)),
            await put("a_billing", mint(second.id, now - 8), service="billing"),
            await put("a_expired", mint(app.credential.id, now - 7200, expires_in=60)),
            await put("a_revoked", mint(second.id, now - 6, revoked_at=now - 1)),
            await put("a_global", mint(app.credential.id, now - 5), service=None),
            await put("b_live", mint(bob.credential.id, now - 4), authenticated_userid="bob"),
            await put(
                "b_billing",
                mint(bob.credential.id, now - 3),
                authenticated_userid="bob",
                service="billing",
            ),
            await put(
                "anon_expired",
                mint(bob.credential.id, now - 7200, expires_in=60, refresh=False),
                authenticated_userid=None,
            ),
        ]
    )
    return Fleet(now, app, bob, second, tokens)


def _ids(fleet: Fleet, *names: str) -> set[str]:
    return {fleet.tokens[name].record.id for name in names}


ALL = (
    "a_live",
    "a_forever",
    "a_billing",
    "a_expired",
    "a_revoked",
    "a_global",
    "b_live",
    "b_billing",
    "anon_expired",
)


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (lambda f: TokenFilter(), ALL),
        (
            lambda f: TokenFilter(authenticated_userid="alice"),
            ("a_live", "a_forever", "a_billing", "a_expired", "a_revoked", "a_global"),
        ),
        (lambda f: TokenFilter(authenticated_userid="nobody"), ()),
        (
            lambda f: TokenFilter(credential_id=f.alice.credential.id),
            ("a_live", "a_forever", "a_expired", "a_global"),
        ),
        (lambda f: TokenFilter(credential_id=f.alice_second.id), ("a_billing", "a_revoked")),
        (
            lambda f: TokenFilter(consumer_id=f.alice.consumer.id),
            ("a_live", "a_forever", "a_billing", "a_expired", "a_revoked", "a_global"),
        ),
        (
            lambda f: TokenFilter(consumer_id=f.bob.consumer.id),
            ("b_live", "b_billing", "anon_expired"),
        ),
        (lambda f: TokenFilter(service="billing"), ("a_billing", "b_billing")),
        (
            lambda f: TokenFilter(service="orders"),
            ("a_live", "a_forever", "a_expired", "a_revoked", "b_live", "anon_expired"),
        ),
        (
            lambda f: TokenFilter(active=True),
            ("a_live", "a_forever", "a_billing", "a_global", "b_live", "b_billing"),
        ),
        (lambda f: TokenFilter(active=False), ("a_expired", "a_revoked", "anon_expired")),
        (
            lambda f: TokenFilter(consumer_id=f.alice.consumer.id, service="billing", active=True),
            ("a_billing",),
        ),
        (
            lambda f: TokenFilter(authenticated_userid="alice", active=False),
            ("a_expired", "a_revoked"),
        ),
        (
            lambda f: TokenFilter(credential_id=f.bob.credential.id, service="billing"),
            ("b_billing",),
        ),
    ],
    ids=[
        "all",
        "user",
        "unknown-user",
        "credential",
        "other-credential",
        "consumer",
        "other-consumer",
        "service",
        "service-orders",
        "active",
        "inactive",
        "combined",
        "user-inactive",
        "credential-service",
    ],
)
async def test_list_tokens_filters(
    store: Store,
    fleet: Fleet,
    which: Callable[[Fleet], TokenFilter],
    expected: tuple[str, ...],
) -> None:
    pages = await walk(
        lambda after: store.list_tokens(which(fleet), fleet.now, after=after, size=2)
    )
    listed = items(pages)
    assert token_ids(listed) == _ids(fleet, *expected)
    assert len(listed) == len(expected)
    keys = [(view.token.created_at, view.token.id) for view in listed]
    assert keys == sorted(keys)


async def test_active_is_judged_at_now(store: Store, fleet: Fleet) -> None:
    later = fleet.now + 7200  # every token with a one-hour expiry has expired by then
    active = await store.list_tokens(TokenFilter(active=True), later)
    assert token_ids(active.items) == _ids(fleet, "a_forever")


async def test_list_and_get_token_join_credential_and_consumer(store: Store, fleet: Fleet) -> None:
    minted = fleet.tokens["b_billing"]
    page = await store.list_tokens(TokenFilter(service="billing"), fleet.now)
    listed = {view.token.id: view for view in page.items}[minted.record.id]
    assert listed == await store.get_token(minted.record.id)
    assert listed == await store.find_token(minted.record.access_digest)
    assert listed.token == minted.record
    assert (listed.client_id, listed.consumer_id) == (
        fleet.bob.credential.client_id,
        fleet.bob.consumer.id,
    )
    assert (listed.username, listed.custom_id) == ("bob", None)
    assert await store.get_token(str(uuid.uuid4())) is None


# updates ------------------------------------------------------------------------------------


async def test_update_consumer_applies_only_the_given_keys(store: Store, app: App) -> None:
    original = app.consumer
    updated = await store.update_consumer(original.id, {"custom_id": "alice-2"})
    assert updated == replace(original, custom_id="alice-2")
    updated = await store.update_consumer(original.id, {"tags": ("x", "y")})
    assert updated == replace(original, custom_id="alice-2", tags=("x", "y"))
    updated = await store.update_consumer(original.id, {"username": "alicia", "custom_id": None})
    assert updated == replace(original, username="alicia", custom_id=None, tags=("x", "y"))
    assert await store.update_consumer(original.id, {}) == updated
    assert await store.get_consumer("alicia") == updated
    assert await store.get_consumer("alice") is None


async def test_update_consumer_unknown_is_none(store: Store) -> None:
    assert await store.update_consumer(str(uuid.uuid4()), {"custom_id": "x"}) is None
    assert await store.update_consumer(str(uuid.uuid4()), {}) is None


def _clash(field: str, value: str) -> ConsumerPatch:
    if field == "username":
        return {"username": value, "tags": ("changed",)}
    return {"custom_id": value, "tags": ("changed",)}


@pytest.mark.parametrize("field", ["username", "custom_id"])
async def test_update_consumer_clash_conflicts_and_changes_nothing(
    store: Store, app: App, field: str
) -> None:
    other = await store.create_consumer("bob", "bob-1")
    clash = {"username": "alice", "custom_id": "alice-1"}[field]
    with pytest.raises(Conflict):
        await store.update_consumer(other.id, _clash(field, clash))
    assert await store.get_consumer(other.id) == other


async def test_update_credential_applies_only_the_given_keys(
    store: Store, app: App, heard: Announcements
) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    original = app.credential
    head = await store.revocation_head()
    updated = await store.update_credential(original.id, {"name": "renamed"})
    assert updated == replace(original, name="renamed")
    updated = await store.update_credential(
        original.id, {"redirect_uris": ("https://new.example/cb",), "tags": ()}
    )
    assert updated == replace(
        original, name="renamed", redirect_uris=("https://new.example/cb",), tags=()
    )
    assert heard.batches == []
    updated = await store.update_credential(original.id, {"client_id": "new-client-id"})
    assert updated is not None
    assert updated.client_id == "new-client-id"
    assert await store.find_credential("new-client-id") == updated
    assert heard.batches == [(token.record.access_digest,)]  # its cached client_id is stale
    same_secret: CredentialPatch = {"secret_hash": original.secret_hash}
    assert await store.update_credential(original.id, same_secret) == updated
    same_type: CredentialPatch = {"client_type": ClientType.CONFIDENTIAL}
    assert await store.update_credential(original.id, same_type) == updated
    assert await store.update_credential(original.id, {}) == updated
    assert updated.created_at == original.created_at
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is None
    assert len(heard.batches) == 1
    assert [d for _, d in await store.revocations_since(head)] == [token.record.access_digest]


async def test_update_credential_unknown_is_none(store: Store) -> None:
    assert await store.update_credential(str(uuid.uuid4()), {"name": "x"}) is None
    assert await store.update_credential(str(uuid.uuid4()), {}) is None


async def test_update_credential_client_id_clash_conflicts_and_revokes_nothing(
    store: Store, app: App, heard: Announcements
) -> None:
    other = await store.create_credential(new_credential(app.consumer.id))
    token = await saved(store, mint(other.id, time.time()))
    head = await store.revocation_head()
    with pytest.raises(Conflict):
        await store.update_credential(
            other.id, {"client_id": app.credential.client_id, "secret_hash": OTHER_SECRET}
        )
    assert await store.get_credential(other.id) == other
    view = await store.find_token(token.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is None
    assert await store.revocations_since(head) == []  # rolled back with the update
    assert heard.batches == []


@pytest.mark.parametrize(
    "patch",
    [
        {"secret_hash": OTHER_SECRET},
        {"secret_hash": None, "client_type": ClientType.PUBLIC},
        {"client_type": ClientType.PUBLIC},
    ],
    ids=["secret", "public-without-secret", "type"],
)
async def test_update_credential_with_new_secret_or_type_revokes(
    store: Store, app: App, heard: Announcements, patch: CredentialPatch
) -> None:
    now = time.time()
    live = [await saved(store, mint(app.credential.id, now)) for _ in range(2)]
    await saved(store, mint(app.credential.id, now, revoked_at=now - 1))
    bystander = await saved(
        store, mint((await store.create_credential(new_credential(app.consumer.id))).id, now)
    )
    logged = await killed_by(store, store.update_credential(app.credential.id, patch))
    expected = sorted(minted.record.access_digest for minted in live)
    assert sorted(logged) == expected
    assert sorted(heard.digests) == expected
    updated = await store.get_credential(app.credential.id)
    assert updated is not None
    assert updated.client_type == patch.get("client_type", ClientType.CONFIDENTIAL)
    for minted in live:
        view = await store.find_token(minted.record.access_digest)
        assert view is not None
        assert view.token.revoked_at is not None
    view = await store.find_token(bystander.record.access_digest)
    assert view is not None
    assert view.token.revoked_at is None


# identity changes: announced (cached identity headers are stale), never revoked -------------


@dataclass(frozen=True)
class Holdings:
    """A consumer's tokens on two credentials, and a stranger's."""

    unrevoked: list[Minted]  # expired ones included: their refresh token may still be live
    revoked: Minted
    stranger: Minted
    second: Credential


@pytest.fixture
async def holdings(store: Store, app: App) -> Holdings:
    now = time.time()
    second = await store.create_credential(new_credential(app.consumer.id))
    bob = await store.create_consumer("bob", None)
    unrevoked = [
        await saved(store, mint(app.credential.id, now)),
        await saved(store, mint(second.id, now)),
        await saved(store, mint(app.credential.id, now - 7200, expires_in=60)),
    ]
    return Holdings(
        unrevoked=unrevoked,
        revoked=await saved(store, mint(app.credential.id, now, revoked_at=now)),
        stranger=await saved(
            store, mint((await store.create_credential(new_credential(bob.id))).id, now)
        ),
        second=second,
    )


async def assert_unrevoked(store: Store, tokens: Sequence[Minted]) -> None:
    for minted in tokens:
        view = await store.find_token(minted.record.access_digest)
        assert view is not None
        assert view.token.revoked_at is None


@pytest.mark.parametrize(
    "patch",
    [{"username": "alicia"}, {"custom_id": "alice-2"}, {"custom_id": None, "tags": ("x",)}],
    ids=["username", "custom_id", "custom_id-cleared"],
)
async def test_a_new_username_or_custom_id_announces_the_consumers_tokens_and_marker(
    store: Store, app: App, holdings: Holdings, heard: Announcements, patch: ConsumerPatch
) -> None:
    expected = sorted(
        [*(m.record.access_digest for m in holdings.unrevoked), consumer_marker(app.consumer.id)]
    )
    logged = await killed_by(store, store.update_consumer(app.consumer.id, patch))
    assert sorted(logged) == expected
    assert len(heard.batches) == 1
    assert sorted(heard.digests) == expected
    await assert_unrevoked(store, [*holdings.unrevoked, holdings.stranger])
    view = await store.find_token(holdings.unrevoked[1].record.access_digest)
    assert view is not None
    assert (view.username, view.custom_id) == (
        patch.get("username", "alice"),
        patch.get("custom_id", "alice-1"),
    )


@pytest.mark.parametrize(
    "patch",
    [{}, {"tags": ("x",)}, {"username": "alice"}, {"username": "alice", "custom_id": "alice-1"}],
    ids=["empty", "tags", "same-username", "same-both"],
)
async def test_a_consumer_patch_changing_no_identity_announces_nothing(
    store: Store, app: App, holdings: Holdings, heard: Announcements, patch: ConsumerPatch
) -> None:
    assert await killed_by(store, store.update_consumer(app.consumer.id, patch)) == []
    assert heard.batches == []


async def test_the_seed_announces_a_new_custom_id_only(
    store: Store, app: App, holdings: Holdings, heard: Announcements
) -> None:
    same = store.upsert_consumer("alice", "alice-1", ("other", "tags"))
    assert await killed_by(store, same) == []
    assert heard.batches == []
    logged = await killed_by(store, store.upsert_consumer("alice", "alice-2"))
    expected = sorted(
        [*(m.record.access_digest for m in holdings.unrevoked), consumer_marker(app.consumer.id)]
    )
    assert sorted(logged) == sorted(heard.digests) == expected
    await assert_unrevoked(store, holdings.unrevoked)


async def test_a_new_client_id_announces_the_credentials_unrevoked_tokens(
    store: Store, app: App, holdings: Holdings, heard: Announcements
) -> None:
    on_credential = [m for m in holdings.unrevoked if m.record.credential_id == app.credential.id]
    expected = sorted(m.record.access_digest for m in on_credential)
    patch: CredentialPatch = {"client_id": "renamed", "name": "renamed"}
    logged = await killed_by(store, store.update_credential(app.credential.id, patch))
    assert sorted(logged) == sorted(heard.digests) == expected
    await assert_unrevoked(store, [*holdings.unrevoked, holdings.stranger])
    view = await store.find_token(on_credential[0].record.access_digest)
    assert view is not None
    assert view.client_id == "renamed"
    assert await killed_by(store, store.update_credential(app.credential.id, patch)) == []
    heard.batches.clear()
    both: CredentialPatch = {"client_id": "again", "secret_hash": OTHER_SECRET}
    logged = await killed_by(store, store.update_credential(app.credential.id, both))
    assert sorted(logged) == sorted(heard.digests) == expected  # revoked, each logged once


# redirect URIs: dropping one drops the codes sent to it ---------------------------------------
URI_A, URI_B, URI_C = (f"https://app.example/{name}" for name in ("a", "b", "c"))


@pytest.mark.parametrize("via", ["update", "upsert"])
@pytest.mark.parametrize(
    ("redirect_uris", "dropped"),
    [
        ((URI_B, "https://app.example/d"), {URI_A, URI_C, None}),  # the default went too
        ((URI_A, URI_C), {URI_B}),
        ((URI_B, URI_A, URI_C), set()),  # the old default is still registered
        ((URI_A, URI_B, URI_C), set()),
    ],
    ids=["first-and-last", "middle", "reordered", "unchanged"],
)
async def test_dropped_redirect_uris_drop_the_codes_sent_to_them(
    store: Store,
    app: App,
    heard: Announcements,
    via: str,
    redirect_uris: tuple[str, ...],
    dropped: set[str | None],
) -> None:
    now = time.time()
    new = replace(new_credential(app.consumer.id), redirect_uris=(URI_A, URI_B, URI_C))
    credential = await store.create_credential(new)
    codes: dict[str | None, str] = {}
    for uri in (URI_A, URI_B, URI_C, None):
        raw, code = auth_code(credential.id, now)
        await store.save_code(replace(code, redirect_uri=uri))
        codes[uri] = raw
    raw_other, other_code = auth_code(app.credential.id, now)
    await store.save_code(replace(other_code, redirect_uri=URI_A))
    if via == "update":
        patch: CredentialPatch = {"redirect_uris": redirect_uris}
        updated = await store.update_credential(credential.id, patch)
    else:
        updated = await store.upsert_credential(replace(new, redirect_uris=redirect_uris))
    assert updated is not None
    assert updated.redirect_uris == redirect_uris
    for uri, raw in codes.items():
        taken = await store.take_code(digest(raw), now)
        assert (taken is None) == (uri in dropped), uri
    assert await store.take_code(digest(raw_other), now) is not None
    assert heard.batches == []


async def test_update_token_expiry_and_scope(store: Store, app: App, heard: Announcements) -> None:
    now = time.time()
    token = await saved(store, mint(app.credential.id, now))
    record, access = token.record, token.record.access_digest
    logged = await killed_by(store, store.update_token(record.id, expires_at=now + 60))
    assert logged == [access]
    view = await store.get_token(record.id)
    assert view is not None
    assert view.token == replace(record, expires_at=now + 60)
    updated = await store.update_token(record.id, expires_at=None)
    assert updated is not None
    assert updated.token == replace(record, expires_at=None)
    updated = await store.update_token(record.id, scope="read")
    assert updated is not None
    assert updated.token == replace(record, expires_at=None, scope="read")
    updated = await store.update_token(record.id, expires_at=now + 5, scope="")
    assert updated is not None
    assert updated.token == replace(record, expires_at=now + 5, scope="")
    assert updated == await store.find_token(access)
    assert (updated.client_id, updated.username) == (app.credential.client_id, "alice")
    assert heard.batches == [(access,)] * 4


async def test_an_admin_scope_binds_the_refresh_token_too(store: Store, app: App) -> None:
    """After a narrowing refresh the row keeps the grant's scope for its refresh token; an
    operator's new scope replaces both, or the next refresh would undo it."""
    record = replace(mint(app.credential.id, time.time()).record, refresh_scope="read write")
    await store.save_token(record)
    updated = await store.update_token(record.id, scope="")
    assert updated is not None
    assert (updated.token.scope, updated.token.refresh_scope) == ("", None)
    assert record.refresh_digest is not None
    assert await store.find_refresh(record.refresh_digest) == updated.token
    # An expiry change leaves the refresh scope alone.
    other = replace(mint(app.credential.id, time.time()).record, refresh_scope="read write")
    await store.save_token(other)
    expiry = await store.update_token(other.id, expires_at=None)
    assert expiry is not None
    assert (expiry.token.scope, expiry.token.refresh_scope) == ("read write", "read write")


async def test_update_token_without_changes_returns_it_and_logs_nothing(
    store: Store, app: App, heard: Announcements
) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    logged = await killed_by(store, store.update_token(token.record.id))
    assert logged == []
    assert heard.batches == []
    view = await store.update_token(token.record.id, expires_at=False, scope=None)
    assert view is not None
    assert view.token == token.record


async def test_update_token_unknown_is_none(store: Store, heard: Announcements) -> None:
    unknown = str(uuid.uuid4())
    assert await killed_by(store, store.update_token(unknown, expires_at=None)) == []
    assert await store.update_token(unknown, scope="x") is None
    assert await store.update_token(unknown) is None
    assert heard.batches == []


async def test_update_token_refuses_expires_at_true(store: Store, app: App) -> None:
    token = await saved(store, mint(app.credential.id, time.time()))
    with pytest.raises(StoreError):
        await store.update_token(token.record.id, expires_at=True)
    assert (await store.get_token(token.record.id)) is not None


async def test_unknown_patch_keys_are_refused(store: Store, app: App) -> None:
    """A patch key that is no patchable field is the caller's bug, never silently dropped."""
    bad_consumer: Any = {"password": "x"}
    bad_credential: Any = {"consumer_id": "x"}
    with pytest.raises(StoreError):
        await store.update_consumer(app.consumer.id, bad_consumer)
    with pytest.raises(StoreError):
        await store.update_credential(app.credential.id, bad_credential)
    assert await store.get_consumer(app.consumer.id) == app.consumer
    assert await store.get_credential(app.credential.id) == app.credential


# bulk revocation ------------------------------------------------------------------------------


async def test_revoke_tokens_by_user_kills_exactly_that_users_tokens(
    store: Store, fleet: Fleet, heard: Announcements
) -> None:
    now = fleet.now
    before = {
        view.token.id: view.token
        for view in items(await walk(lambda a: store.list_tokens(TokenFilter(), now, after=a)))
    }
    # unrevoked alice rows, expired ones included: an expired access token may hold a live
    # refresh token
    targets = ("a_live", "a_forever", "a_billing", "a_expired", "a_global")
    expected = sorted(fleet.tokens[name].record.access_digest for name in targets)
    logged = await killed_by(
        store, store.revoke_tokens(TokenFilter(authenticated_userid="alice"), now)
    )
    assert sorted(logged) == expected
    assert sorted(heard.digests) == expected
    assert len(heard.batches) == 1
    after = {
        view.token.id: view.token
        for view in items(await walk(lambda a: store.list_tokens(TokenFilter(), now, after=a)))
    }
    assert after.keys() == before.keys()
    for token_id, record in after.items():
        if token_id in _ids(fleet, *targets):
            assert record == replace(before[token_id], revoked_at=now)
        else:
            assert record == before[token_id]  # others untouched, a_revoked keeps its time
    assert await store.revoke_tokens(TokenFilter(authenticated_userid="alice"), now) == 0
    assert len(heard.batches) == 1


async def test_revoke_tokens_counts_rows(store: Store, fleet: Fleet) -> None:
    assert await store.revoke_tokens(TokenFilter(authenticated_userid="alice"), fleet.now) == 5
    assert await store.revoke_tokens(TokenFilter(authenticated_userid="nobody"), fleet.now) == 0


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (lambda f: TokenFilter(active=True, service="billing"), ("a_billing", "b_billing")),
        (lambda f: TokenFilter(active=False), ("a_expired", "anon_expired")),
        (
            lambda f: TokenFilter(consumer_id=f.bob.consumer.id),
            ("b_live", "b_billing", "anon_expired"),
        ),
        (lambda f: TokenFilter(credential_id=f.alice_second.id), ("a_billing",)),
        (
            lambda f: TokenFilter(),
            tuple(name for name in ALL if name != "a_revoked"),
        ),
    ],
    ids=["active-service", "inactive", "consumer", "credential", "all"],
)
async def test_revoke_tokens_filters(
    store: Store,
    fleet: Fleet,
    heard: Announcements,
    which: Callable[[Fleet], TokenFilter],
    expected: tuple[str, ...],
) -> None:
    digests = sorted(fleet.tokens[name].record.access_digest for name in expected)
    logged = await killed_by(store, store.revoke_tokens(which(fleet), fleet.now))
    assert sorted(logged) == sorted(heard.digests) == digests
    still = await store.list_tokens(TokenFilter(), fleet.now, size=1000)
    revoked_now = {v.token.id for v in still.items if v.token.revoked_at == fleet.now}
    assert revoked_now == _ids(fleet, *expected)


# revocation log -------------------------------------------------------------------------------


async def test_revocation_log_starts_empty(store: Store) -> None:
    assert await store.revocation_head() == 0
    assert await store.revocations_since(0) == []


async def test_every_killing_call_logs_exactly_its_digests(
    store: Store, app: App, heard: Announcements
) -> None:
    now, cid = time.time(), app.credential.id

    async def check(call: Awaitable[object], dead: Sequence[Minted | bytes]) -> None:
        heard.batches.clear()
        expected = sorted(d if isinstance(d, bytes) else d.record.access_digest for d in dead)
        logged = await killed_by(store, call)
        assert sorted(logged) == expected
        assert sorted(heard.digests) == expected

    one = await saved(store, mint(cid, now))
    await check(store.revoke_token(one.record.id, now), [one])
    await check(store.revoke_token(one.record.id, now), [])  # already revoked

    family = str(uuid.uuid4())
    members = [await saved(store, mint(cid, now, family_id=family)) for _ in range(3)]
    await check(store.revoke_family(family, now), members)

    users = [await saved(store, mint(cid, now)) for _ in range(2)]
    await check(store.revoke_tokens(TokenFilter(credential_id=cid), now), users)

    old = await saved(store, mint(cid, now))
    assert old.refresh is not None
    new = mint(cid, now, family_id=old.record.family_id)
    await check(store.rotate_refresh(digest(old.refresh), new.record, now), [old])
    lost = mint(cid, now)
    await check(store.rotate_refresh(digest(old.refresh), lost.record, now), [])

    assert new.refresh is not None
    fresh = digest(str(uuid.uuid4()))
    await check(store.replace_access(digest(new.refresh), fresh, "p", now + 60, now), [new])

    changed = await saved(store, mint(cid, now))
    await check(store.update_token(changed.record.id, scope="read"), [changed])

    same = new_credential(app.consumer.id, client_id=app.credential.client_id)
    unchanged = await saved(store, mint(cid, now))
    await check(store.upsert_credential(same), [])
    replaced = replace(same, secret_hash=OTHER_SECRET)
    await check(store.upsert_credential(replaced), [fresh, changed, unchanged])

    patched = [await saved(store, mint(cid, now)) for _ in range(2)]
    await check(store.update_credential(cid, {"client_type": ClientType.PUBLIC}), patched)
    await check(store.update_credential(cid, {"name": "renamed"}), [])

    second = await store.create_credential(new_credential(app.consumer.id))
    on_second = [await saved(store, mint(second.id, now)) for _ in range(2)]
    await saved(store, mint(second.id, now, revoked_at=now))
    await check(store.delete_credential(second.id), on_second)
    await check(store.delete_credential(second.id), [])

    third = await store.create_credential(new_credential(app.consumer.id))
    on_consumer = [await saved(store, mint(cid, now)), await saved(store, mint(third.id, now))]
    marker = consumer_marker(app.consumer.id)
    await check(store.delete_consumer(app.consumer.id), [*on_consumer, marker])
    await check(store.delete_consumer(app.consumer.id), [])


async def test_non_killing_calls_log_nothing(store: Store, app: App) -> None:
    now, cid = time.time(), app.credential.id
    head = await store.revocation_head()
    await store.create_consumer("bob", None)
    await store.upsert_consumer("carol", None, ("t",))
    await store.update_consumer(app.consumer.id, {"tags": ("x",)})
    other = await store.create_credential(new_credential(app.consumer.id))
    await store.upsert_credential(new_credential(app.consumer.id, client_id=other.client_id))
    token = await saved(store, mint(cid, now))
    await store.find_token(token.record.access_digest)
    await store.list_tokens(TokenFilter(), now)
    await store.sweep(now)
    assert await store.revoke_tokens(TokenFilter(authenticated_userid="nobody"), now) == 0
    assert await store.revocations_since(head) == []
    assert await store.revocation_head() == head


async def test_a_failed_rotation_logs_nothing(store: Store, app: App, heard: Announcements) -> None:
    now = time.time()
    old = await saved(store, mint(app.credential.id, now))
    taken = await saved(store, mint(app.credential.id, now))
    assert old.refresh is not None
    clash = replace(mint(app.credential.id, now).record, access_digest=taken.record.access_digest)
    head = await store.revocation_head()
    with pytest.raises(Conflict):
        await store.rotate_refresh(digest(old.refresh), clash, now)
    assert await store.revocations_since(head) == []
    assert heard.batches == []
    assert await store.find_refresh(digest(old.refresh)) == old.record  # still live


async def test_revocations_since_orders_and_limits(store: Store, app: App) -> None:
    now = time.time()
    tokens = [await saved(store, mint(app.credential.id, now)) for _ in range(5)]
    for minted in tokens:
        await store.revoke_token(minted.record.id, now)
    everything = await store.revocations_since(0)
    assert [d for _, d in everything] == [m.record.access_digest for m in tokens]
    seqs = [seq for seq, _ in everything]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert await store.revocation_head() == seqs[-1]
    assert await store.revocations_since(0, limit=2) == everything[:2]
    assert await store.revocations_since(seqs[1], limit=2) == everything[2:4]
    assert await store.revocations_since(seqs[3], limit=2) == everything[4:]
    assert await store.revocations_since(seqs[-1]) == []
    assert await store.revocations_since(0, limit=0) == []
    assert await store.revocations_since(seqs[2] - 1000) == everything


async def test_another_store_on_the_database_reads_the_log(
    store: Store, database: Database, app: App
) -> None:
    other = database.make()
    await other.open()
    try:
        head = await other.revocation_head()
        minted = await saved(store, mint(app.credential.id, time.time()))
        await store.revoke_token(minted.record.id, time.time())
        assert [d for _, d in await other.revocations_since(head)] == [minted.record.access_digest]
    finally:
        await other.close()


async def test_concurrent_revocations_from_two_stores_all_logged_once(
    store: Store, database: Database, app: App
) -> None:
    other = database.make()
    await other.open()
    try:
        now = time.time()
        tokens = [await saved(store, mint(app.credential.id, now)) for _ in range(20)]
        stores = (store, other)
        results = await asyncio.gather(
            *(stores[i % 2].revoke_token(m.record.id, now) for i, m in enumerate(tokens)),
            *(stores[i % 2].revoke_token(m.record.id, now) for i, m in enumerate(tokens)),
        )
        assert sum(results) == 20
        entries = await other.revocations_since(0)
        assert sorted(d for _, d in entries) == sorted(m.record.access_digest for m in tokens)
        assert [seq for seq, _ in entries] == list(range(1, 21))
    finally:
        await other.close()


async def test_sweep_prunes_old_log_entries_only(store: Store, app: App) -> None:
    now = time.time()
    early = [await saved(store, mint(app.credential.id, now)) for _ in range(3)]
    late = [await saved(store, mint(app.credential.id, now)) for _ in range(2)]
    for minted in early:
        await store.revoke_token(minted.record.id, now)
    await asyncio.sleep(0.02)
    middle = time.time()
    await asyncio.sleep(0.02)
    for minted in late:
        await store.revoke_token(minted.record.id, now)
    head = await store.revocation_head()
    # a long grace keeps every token: what the sweep counts now is log entries only
    assert await store.sweep(middle + 3600, grace_seconds=1e9) == 3
    assert [d for _, d in await store.revocations_since(0)] == [
        m.record.access_digest for m in late
    ]
    assert await store.sweep(middle + 3600, grace_seconds=1e9) == 0
    assert await store.sweep(middle + 3599, grace_seconds=1e9) == 0
    assert await store.sweep(time.time() + 3601, grace_seconds=1e9) == 2
    assert await store.revocations_since(0) == []
    assert await store.revocation_head() == head  # never goes back: pollers keep their place
    extra = await saved(store, mint(app.credential.id, now))
    await store.revoke_token(extra.record.id, now)
    assert await store.revocations_since(head) == [(head + 1, extra.record.access_digest)]
    for minted in [*early, *late]:
        assert await store.find_token(minted.record.access_digest) is not None


# sqlite only: the migration that brings the log ----------------------------------------------


async def test_a_version_one_sqlite_file_migrates_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"

    def make_v1() -> None:
        with sqlite3.connect(path) as db:
            db.executescript(MIGRATIONS[0])
            db.execute(
                "INSERT INTO consumers (id, username, custom_id, tags, created_at)"
                " VALUES ('c1', 'old', NULL, '[\"legacy\"]', 1)"
            )
            db.execute("PRAGMA user_version = 1")
        db.close()

    await asyncio.to_thread(make_v1)
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.diagnostics())["user_version"] == len(MIGRATIONS)
        page = await store.list_consumers(tags=TagFilter(("legacy",)))
        assert [c.username for c in page.items] == ["old"]
        assert await store.revocation_head() == 0
    finally:
        await store.close()
