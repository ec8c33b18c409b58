"""`edgeauth import kong --kong-pg`: a real Kong 3.x schema on PostgreSQL → a real gateway.

One Kong database, filled the way Kong fills it, is imported by real `edgeauth` processes
into the SQLite store of a config.toml; the written [[services]] then run in a real gateway,
and the imported clients, secrets, provision key and tokens are used over TLS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from edgeauth import tls
from tests.conftest import Backend, GatewayFactory, write_config
from tests.kong.conftest import edgeauth_import, statuses, written_services
from tests.kong.kong_db import KongDb, Token
from tests.store.conftest import PgSchema, pg_connect, pg_schema, require_driver

require_driver()

PROVISION_KEY = "kong-provision-key-0123456789"
CLEAR, HASHED = "clear-secret-of-alice", "hashed-secret-of-bob"
SHORT_LIFE = 3.0  # seconds an imported access token has left when imported


@dataclass
class Kong:
    schema: PgSchema
    db: KongDb
    service: str
    alice: str
    bob: str
    clear_app: str
    hashed_app: str
    live: Token
    stale: Token
    expired: Token


@pytest.fixture
async def kong(backend: Backend) -> AsyncIterator[Kong]:
    """Kong's tables in a fresh schema: the events service with an oauth2 plugin and a
    rate-limiting one, two consumers (one clear secret, one hashed), tokens in every state,
    an authorization code, a key-auth credential, and a consumer in another workspace."""
    async with pg_schema() as schema:
        conn = await pg_connect(schema.dsn)
        try:
            db = await KongDb.create(conn)
            yield await _fill(db, schema, backend.port)
        finally:
            await conn.close()


async def _fill(db: KongDb, schema: PgSchema, port: int) -> Kong:
    now = time.time()
    service = await db.service("events", "127.0.0.1", port, "/api")
    await db.route(service, "events-api", ["/events"], strip_path=False)
    await db.plugin("oauth2", _oauth2_config(), service_id=service)
    await db.plugin("rate-limiting", {"minute": 100, "policy": "local"}, service_id=service)
    alice = await db.consumer("alice", "alice-1", created_at=1_600_000_000)
    bob = await db.consumer("bob")
    clear_app = await db.credential(alice, "kong-clear", CLEAR, hashed=False)
    hashed_app = await db.credential(bob, "kong-hashed", HASHED, hashed=True)
    week = now + 7 * 86400
    live = await db.token(clear_app, service, created_at=now - 60, expires_in=3600, ttl=week)
    stale = await db.token(hashed_app, service, created_at=now - 7200, expires_in=3600, ttl=week)
    expired = await db.token(
        clear_app, service, created_at=now - 7200, expires_in=3600, refresh=False
    )
    await db.token(clear_app, service, created_at=now - 9000, expires_in=3600, ttl=now - 10)
    await db.code(clear_app, service)
    await db.key_auth(bob)
    other = await db.workspace("team-b")
    await other.consumer("carol")
    return Kong(schema, db, service, alice, bob, clear_app, hashed_app, live, stale, expired)


def _oauth2_config() -> dict[str, object]:
    """An oauth2 plugin config as Kong 3 stores it (every field present)."""
    return {
        "scopes": ["read", "write"],
        "mandatory_scope": False,
        "provision_key": PROVISION_KEY,
        "token_expiration": 3600,
        "enable_authorization_code": False,
        "enable_implicit_grant": False,
        "enable_client_credentials": True,
        "enable_password_grant": True,
        "hide_credentials": True,
        "accept_http_if_already_terminated": False,
        "anonymous": None,
        "global_credentials": False,
        "auth_header_name": "authorization",
        "refresh_token_ttl": 1209600,
        "reuse_refresh_token": False,
        "pkce": "lax",
        "realm": None,
    }


async def test_kong_database_import_end_to_end(
    kong: Kong,
    gateway: GatewayFactory,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client: aiohttp.ClientSession,
) -> None:
    config = write_config(tmp_path, dev_cert, [])
    store_file = tmp_path / "edgeauth.db"
    services_file = tmp_path / "kong-services.toml"

    dry = await edgeauth_import(config, "--kong-pg", kong.schema.dsn, "--json")
    assert dry.code == 0, dry.out + dry.err
    plan = dry.summary
    assert plan["applied"] is False
    assert statuses(plan, "consumers") == {"create": 2}
    assert statuses(plan, "credentials") == {"create": 2}
    assert statuses(plan, "tokens") == {"create": 2, "expired": 2, "refresh_only": 1}
    assert plan["authorization_codes_not_carried"] == 1
    assert any("rate-limiting" in line for line in plan["not_carried"])
    assert any("1 consumers of other workspaces" in line for line in plan["not_carried"])
    assert any(line.startswith("1 keyauth_credentials: ") for line in plan["not_carried"])
    assert "[[services]]" in plan["services_toml"]
    assert not store_file.exists()  # a dry run writes nothing, not even an empty store

    now = time.time()
    short = await kong.db.token(
        kong.hashed_app, kong.service, created_at=now - 3600 + SHORT_LIFE, expires_in=3600
    )
    args = ("--kong-pg", kong.schema.dsn, "--apply", "--write-config", str(services_file))
    applied = await edgeauth_import(config, *args, "--json")
    assert applied.code == 0, applied.err
    assert applied.summary["written"] == {
        "consumers": 2,
        "credentials": 2,
        "tokens": 3,
        "tokens_already_stored": 0,
    }
    assert services_file.stat().st_mode & 0o777 == 0o600

    gw = await gateway(written_services(services_file))
    token_url, api = f"{gw.url}/events/oauth2/token", f"{gw.url}/events/echo"

    async def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with client.get(api, headers=headers) as resp:
            return resp.status

    # the imported short-lived token works for what is left of its life, then not
    assert await status(short.access) == 200
    await asyncio.sleep(max(0.0, now + SHORT_LIFE - time.time()) + 0.5)
    assert await status(short.access) == 401

    assert await status(kong.live.access) == 200
    assert await status(kong.expired.access) == 401  # expired in Kong: skipped, refused
    assert await status(kong.stale.access) == 401  # expired access token, live refresh token

    for client_id, secret in (("kong-clear", CLEAR), ("kong-hashed", HASHED)):
        login = {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "7",
        }
        async with client.post(token_url, json=login) as resp:
            assert resp.status == 200, (client_id, await resp.text())
            assert await status((await resp.json())["access_token"]) == 200

    assert kong.live.refresh is not None
    renewed = await _refresh(client, token_url, "kong-clear", CLEAR, kong.live.refresh)
    assert await status(renewed) == 200
    assert await status(kong.live.access) == 401  # rotated away
    assert kong.stale.refresh is not None
    assert (
        await status(await _refresh(client, token_url, "kong-hashed", HASHED, kong.stale.refresh))
        == 200
    )

    async with aiohttp.ClientSession(headers=gw.admin_headers) as admin:
        async with admin.get(f"{gw.admin_url}/consumers/{kong.alice}") as resp:
            assert resp.status == 200
            alice = await resp.json()
        assert (alice["username"], alice["created_at"]) == ("alice", 1_600_000_000)
        assert "managed-by-config" not in alice["tags"]
        for app in (kong.clear_app, kong.hashed_app):
            async with admin.get(f"{gw.admin_url}/oauth2/{app}") as resp:
                assert resp.status == 200
                assert (await resp.json())["id"] == app

    again = await edgeauth_import(config, *args, "--json")
    assert again.code == 0, again.err
    summary = again.summary
    assert statuses(summary, "consumers") == {"unchanged": 2}
    assert statuses(summary, "credentials") == {"unchanged": 2}
    assert summary["tokens"]["create"] == 0
    assert summary["written"] == {
        "consumers": 0,
        "credentials": 0,
        "tokens": 0,
        "tokens_already_stored": 0,
    }
    assert await status(renewed) == 200
    assert await status(kong.live.access) == 401  # a re-run does not bring it back


async def _refresh(
    client: aiohttp.ClientSession, url: str, client_id: str, secret: str, refresh: str
) -> str:
    body = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": secret,
        "refresh_token": refresh,
    }
    async with client.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["access_token"]
    assert isinstance(token, str)
    return token
