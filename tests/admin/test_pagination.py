"""Lists (design §6): `{data, offset, next}`, `size` 1..1000 (default 100), opaque cursors,
`?tags=a,b` (all) and `?tags=a/b` (any), and `next` repeating the caller's filters."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.admin.conftest import call
from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import events_service

COUNT = 1100  # over the largest page (1000), small enough to set up quickly
FEW = 5


@dataclass
class Paged:
    gw: RunningGateway
    http: aiohttp.ClientSession
    ids: list[str]  # in creation order

    async def get(self, path: str) -> tuple[int, Any]:
        reply = await call(self.http, "GET", self.gw.admin_url + path)
        return reply.status, reply.body

    async def walk(self, first: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Follow `next` from `first` until it is null: every item, and every `next` seen."""
        items: list[dict[str, Any]] = []
        links: list[str] = []
        path: str | None = first
        while path is not None:
            status, body = await self.get(path)
            assert status == 200, body
            assert set(body) <= {"data", "offset", "next"}
            items.extend(body["data"])
            path = body["next"]
            if path is not None:
                links.append(path)
                assert body["offset"] == parse_qs(urlsplit(path).query)["offset"][0]
            else:
                assert "offset" not in body or body["offset"] is None
            assert len(links) <= COUNT  # never loops forever
        return items, links


def _tags(i: int) -> tuple[str, ...]:
    tags = []
    if i % 2 == 0:
        tags.append("even")
    if i % 3 == 0:
        tags.append("three")
    if i % 7 == 0:
        tags.append("seven")
    return tuple(tags)


async def _paged(gateway: GatewayFactory, backend: Backend, count: int) -> Paged:
    """A gateway with `count` consumers, made through the store one after another to save
    time (the listing under test goes through the API)."""
    gw = await gateway([events_service(backend)])
    store = gw.gateway.c.store
    assert store is not None
    ids = []
    for i in range(count):
        made = await store.create_consumer(f"user-{i:05d}", None, _tags(i))
        ids.append(made.id)
    return Paged(gw, aiohttp.ClientSession(headers=gw.admin_headers), ids)


@pytest.fixture
async def paged(backend: Backend, gateway: GatewayFactory) -> AsyncIterator[Paged]:
    """COUNT consumers."""
    world = await _paged(gateway, backend, COUNT)
    async with world.http:
        yield world


@pytest.fixture
async def few(backend: Backend, gateway: GatewayFactory) -> AsyncIterator[Paged]:
    """FEW consumers, for the parameter checks."""
    world = await _paged(gateway, backend, FEW)
    async with world.http:
        yield world


async def test_walk_returns_every_consumer_exactly_once(paged: Paged) -> None:
    items, links = await paged.walk("/consumers?size=500")
    ids = [c["id"] for c in items]
    assert len(ids) == len(set(ids)) == COUNT
    assert set(ids) == set(paged.ids)
    assert len(links) == 2  # 500 + 500 + 100
    stamps = [c["created_at"] for c in items]
    assert stamps == sorted(stamps)  # oldest first, at least to the second
    for link in links:
        parts = urlsplit(link)
        assert parts.path == "/consumers"
        assert parse_qs(parts.query)["size"] == ["500"]


async def test_walk_is_in_key_order(paged: Paged) -> None:
    """Oldest first: `created_at` (whole seconds, as Kong's), ties broken by id."""
    items, _ = await paged.walk("/consumers?size=1000")
    keys = [(c["created_at"], c["id"]) for c in items]
    assert keys == sorted(keys)
    assert sorted(c["id"] for c in items) == sorted(paged.ids)


async def test_default_size_is_100_and_workspace_next(paged: Paged) -> None:
    status, body = await paged.get("/consumers")
    assert status == 200
    assert len(body["data"]) == 100
    assert isinstance(body["offset"], str)
    assert body["next"].startswith("/consumers?")
    status, body = await paged.get("/default/consumers?size=2")
    assert status == 200
    assert len(body["data"]) == 2
    assert body["next"].startswith("/default/consumers?")
    status, again = await paged.get(body["next"])
    assert status == 200
    assert {c["id"] for c in again["data"]}.isdisjoint({c["id"] for c in body["data"]})


@pytest.mark.parametrize(
    "size",
    [
        "0",
        "1001",
        "x",
        "-1",
        "1.5",
        "10e2",
        "%205",
        "99999999999999999999",
        "%C2%B2",  # "²": str.isdigit() is true, int() refuses it
    ],
)
async def test_bad_size_is_400(few: Paged, size: str) -> None:
    for path in ("/consumers", "/oauth2", "/oauth2_tokens", "/consumers/user-00001/oauth2"):
        status, body = await few.get(f"{path}?size={size}")
        assert status == 400, (path, body)
        assert body == {"message": "size must be an integer between 1 and 1000"}


async def test_size_bounds_are_accepted(few: Paged) -> None:
    for size in ("1", "1000"):
        status, body = await few.get(f"/consumers?size={size}")
        assert status == 200
        assert len(body["data"]) == min(int(size), FEW)


@pytest.mark.parametrize(
    "offset",
    [
        "garbage!!",
        "Zm9v",  # base64 of "foo"
        base64.urlsafe_b64encode(b'[1e999,"x"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'[NaN,"x"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'[1,"x",3]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'["a","b"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b"{}").decode().rstrip("="),
        "A" * 5000,
        "%00",
    ],
)
async def test_malformed_offset_is_400(few: Paged, offset: str) -> None:
    for path in ("/consumers", "/oauth2", "/oauth2_tokens", "/consumers/user-00001/oauth2"):
        status, body = await few.get(f"{path}?offset={offset}")
        assert status == 400, (path, body)
        assert isinstance(body, dict)
        assert isinstance(body["message"], str)


async def test_tag_filters_all_and_any(paged: Paged) -> None:
    names = [f"user-{i:05d}" for i in range(COUNT)]
    both = {n for i, n in enumerate(names) if i % 6 == 0}
    either = {n for i, n in enumerate(names) if i % 2 == 0 or i % 7 == 0}

    items, _ = await paged.walk("/consumers?tags=even,three&size=1000")
    assert len(items) == len(both)
    assert {c["username"] for c in items} == both
    assert all({"even", "three"} <= set(c["tags"]) for c in items)

    items, _ = await paged.walk("/consumers?tags=even/seven&size=1000")
    assert len(items) == len(either)
    assert {c["username"] for c in items} == either

    status, body = await paged.get("/consumers?tags=nosuchtag")
    assert status == 200
    assert body == {"data": [], "next": None}


async def test_next_preserves_the_tags_filter(paged: Paged) -> None:
    sevens = {f"user-{i:05d}" for i in range(COUNT) if i % 7 == 0}
    items, links = await paged.walk("/consumers?tags=seven&size=100")
    assert len(links) == len(sevens) // 100
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert query["tags"] == ["seven"]
        assert query["size"] == ["100"]
    assert [c["username"] for c in items if c["username"] not in sevens] == []
    assert len(items) == len(sevens)

    items, links = await paged.walk("/consumers?tags=three/seven&size=250")
    assert links
    assert all(parse_qs(urlsplit(link).query)["tags"] == ["three/seven"] for link in links)
    expected = {f"user-{i:05d}" for i in range(COUNT) if i % 3 == 0 or i % 7 == 0}
    assert {c["username"] for c in items} == expected
    assert len(items) == len(expected)


async def test_mixed_tag_separators_are_400(few: Paged) -> None:
    status, body = await few.get("/consumers?tags=a,b/c")
    assert status == 400
    assert isinstance(body["message"], str)
