"""A revocation heard while a store read of the same token is in flight (issue 13, point 12).

Worker A validates a token it has not cached: its read starts, the database answers "live",
and before that answer reaches the waiters another process revokes the token and worker A
hears of it through the revocation log. A request arriving now joins the read in flight; it
must not be let through by an answer older than the revocation it already heard of.

Real SQLite file shared by two stores (worker A's and the revoking process's) and the real
revocation feed. Worker A's store holds a token read between the database's answer and its
delivery: the window that, on a real network, a revocation can land in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgeauth.cache import TokenCache
from edgeauth.config import OAuth2Settings, StoreSettings
from edgeauth.errors import InvalidToken
from edgeauth.feed import feed_for
from edgeauth.models import TokenView
from edgeauth.oauth.policy import Policy
from edgeauth.store.sqlite import SQLiteStore
from edgeauth.validation import Validator
from tests.store.records import mint, new_credential


class HeldReads(SQLiteStore):
    """A store whose token reads can be held after the database answered."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.release.set()
        self.answered = asyncio.Event()

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        view = await super().find_token(access_digest)
        self.answered.set()
        await self.release.wait()
        return view


class Hearing(Validator):
    """A validator that says when it has heard of a revocation."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store, TokenCache(100, negative_ttl=5.0))
        self.heard = asyncio.Event()

    def revoked(self, digests: Sequence[bytes]) -> None:
        super().revoked(digests)
        self.heard.set()


async def test_a_request_joining_a_read_older_than_a_revocation_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "edgeauth.db"
    worker, other = HeldReads(path), SQLiteStore(path)
    await worker.open()
    await other.open()
    consumer = await other.create_consumer("alice", None)
    credential = await other.create_credential(new_credential(consumer.id))
    token = mint(credential.id, time.time())
    await other.save_token(token.record)
    validator = Hearing(worker)
    heard = validator.heard
    feed = feed_for(worker, StoreSettings(), None)
    await feed.attach(validator)
    policy = Policy("orders", OAuth2Settings(), "key")
    try:
        worker.release.clear()
        first = asyncio.create_task(validator.validate(token.access, policy, (), time.time()))
        await asyncio.wait_for(worker.answered.wait(), 5)  # the database said "live"
        assert await other.revoke_token(token.record.id, time.time())
        await asyncio.wait_for(heard.wait(), 5)  # worker A has heard of the revocation
        second = asyncio.create_task(validator.validate(token.access, policy, (), time.time()))
        await asyncio.sleep(0.05)  # the second request joins the read in flight
        worker.release.set()
        with pytest.raises(InvalidToken):
            await asyncio.wait_for(second, 5)
        with pytest.raises(InvalidToken):
            await asyncio.wait_for(first, 5)
        with pytest.raises(InvalidToken):  # and nothing live was cached
            await validator.validate(token.access, policy, (), time.time())
    finally:
        await feed.stop()
        await worker.close()
        await other.close()
