"""A client that changes while its token or code waits to be stored, on PostgreSQL (issue 13,
point 2).

The test holds the application's row locked, as an admin update in flight does, sends a
request that passed every check, waits until its insert is queued behind that lock, then
changes the secret and commits. The insert re-checks the client it was granted to and finds
it changed: the answer is a plain `invalid_client` (never a redirect to a URI the change may
have removed, never a 503), and nothing was stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service
from tests.store.conftest import PgSchema, pg_connect, pg_schema

INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client authentication"}
AUTHORIZE = {
    "provision_key": PROVISION_KEY,
    "authenticated_userid": "user-1",
    "client_id": "clientid",
    "redirect_uri": "https://app.example/callback",
}
REQUESTS: dict[str, tuple[str, dict[str, str]]] = {
    "authorize code": ("authorize", {**AUTHORIZE, "response_type": "code"}),
    "authorize token": ("authorize", {**AUTHORIZE, "response_type": "token"}),
    "password grant": (
        "token",
        {
            "grant_type": "password",
            "client_id": "clientid",
            "client_secret": SECRET,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "user-1",
        },
    ),
}


@pytest.fixture
async def schema() -> AsyncIterator[PgSchema]:
    async with pg_schema() as made:
        yield made


async def _waiting_on_a_lock(schema: PgSchema) -> None:
    """Until a statement of the gateway waits for a lock (asked on a connection of its own:
    pg_stat_activity is a snapshot per transaction)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = $1 AND wait_event_type = 'Lock'"
    )
    watcher = await pg_connect(schema.dsn)
    try:
        for _ in range(500):
            if await watcher.fetchval(sql, schema.application_name):
                return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    raise AssertionError("the request never waited for the application's row")


async def _stored(db: Any) -> tuple[int, int]:
    tokens = await db.fetchval("SELECT count(*) FROM tokens")
    codes = await db.fetchval("SELECT count(*) FROM codes")
    return int(tokens), int(codes)


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_a_client_changed_while_its_grant_waits_is_refused_plainly(
    kind: str,
    backend: Backend,
    gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    tmp_path: Path,
    schema: PgSchema,
) -> None:
    service = events_service(backend, enable_authorization_code=True, enable_implicit_grant=True)
    gw: RunningGateway = await gateway(
        [service],
        consumers=consumers(tmp_path),
        tables={"store": {"backend": "postgres", "dsn": schema.dsn}},
    )
    endpoint, form = REQUESTS[kind]
    db = await pg_connect(schema.dsn)
    try:
        assert await _stored(db) == (0, 0)
        async with db.transaction():
            await db.execute("SELECT 1 FROM credentials WHERE client_id = 'clientid' FOR UPDATE")
            sent = asyncio.create_task(client.post(f"{gw.url}/events/oauth2/{endpoint}", data=form))
            await _waiting_on_a_lock(schema)
            await db.execute(
                "UPDATE credentials SET secret_hash = 'changed' WHERE client_id = 'clientid'"
            )
        async with await sent as resp:
            assert (resp.status, await resp.json()) == (400, INVALID_CLIENT)
        assert await _stored(db) == (0, 0)
    finally:
        await db.close()
