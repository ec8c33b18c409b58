"""A Kong 3.x database in a fresh PostgreSQL schema, filled the way Kong fills it.

The DDL is ours, written from what Kong's core and oauth2 migrations leave behind in 3.x:
workspaces and a `ws_id` on every entity (names unique per workspace), timestamps with time
zone, `ttl` on tokens and codes, text arrays, JSONB plugin configs. Secrets are hashed as
Kong's oauth2 `hash_secret` does: PBKDF2-SHA512, 10,000 iterations, 32 bytes, 16-byte salt,
`$pbkdf2-sha512$i=10000,l=32$<salt>$<hash>` in unpadded base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DDL = """
CREATE TABLE workspaces (
    id UUID PRIMARY KEY,
    name TEXT UNIQUE,
    comment TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    meta JSONB,
    config JSONB,
    updated_at TIMESTAMP WITH TIME ZONE
);
CREATE TABLE consumers (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP WITH TIME ZONE,
    username TEXT,
    custom_id TEXT,
    tags TEXT[],
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, username),
    UNIQUE (ws_id, custom_id)
);
CREATE TABLE services (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE,
    name TEXT,
    retries BIGINT,
    protocol TEXT,
    host TEXT,
    port BIGINT,
    path TEXT,
    connect_timeout BIGINT,
    write_timeout BIGINT,
    read_timeout BIGINT,
    tags TEXT[],
    client_certificate_id UUID,
    tls_verify BOOLEAN,
    tls_verify_depth SMALLINT,
    ca_certificates UUID[],
    enabled BOOLEAN DEFAULT true,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, name)
);
CREATE TABLE routes (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE,
    name TEXT,
    service_id UUID,
    protocols TEXT[],
    methods TEXT[],
    hosts TEXT[],
    paths TEXT[],
    snis TEXT[],
    sources JSONB[],
    destinations JSONB[],
    regex_priority BIGINT,
    strip_path BOOLEAN,
    preserve_host BOOLEAN,
    tags TEXT[],
    https_redirect_status_code INTEGER,
    headers JSONB,
    path_handling TEXT DEFAULT 'v0',
    request_buffering BOOLEAN,
    response_buffering BOOLEAN,
    expression TEXT,
    priority BIGINT,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, name),
    FOREIGN KEY (service_id, ws_id) REFERENCES services (id, ws_id)
);
CREATE TABLE plugins (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP WITH TIME ZONE,
    name TEXT NOT NULL,
    consumer_id UUID,
    service_id UUID,
    route_id UUID,
    config JSONB NOT NULL,
    enabled BOOLEAN NOT NULL,
    cache_key TEXT UNIQUE,
    protocols TEXT[],
    tags TEXT[],
    instance_name TEXT,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, instance_name),
    FOREIGN KEY (consumer_id, ws_id) REFERENCES consumers (id, ws_id) ON DELETE CASCADE,
    FOREIGN KEY (service_id, ws_id) REFERENCES services (id, ws_id) ON DELETE CASCADE,
    FOREIGN KEY (route_id, ws_id) REFERENCES routes (id, ws_id) ON DELETE CASCADE
);
CREATE TABLE upstreams (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(3) AT TIME ZONE 'UTC'),
    name TEXT,
    algorithm TEXT,
    slots INTEGER NOT NULL,
    tags TEXT[],
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (ws_id, name)
);
CREATE TABLE oauth2_credentials (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    name TEXT,
    consumer_id UUID,
    client_id TEXT,
    client_secret TEXT,
    redirect_uris TEXT[],
    tags TEXT[],
    client_type TEXT,
    hash_secret BOOLEAN,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, client_id),
    FOREIGN KEY (consumer_id, ws_id) REFERENCES consumers (id, ws_id) ON DELETE CASCADE
);
CREATE INDEX oauth2_credentials_secret_idx ON oauth2_credentials (client_secret);
CREATE TABLE oauth2_authorization_codes (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    credential_id UUID,
    service_id UUID,
    code TEXT,
    authenticated_userid TEXT,
    scope TEXT,
    ttl TIMESTAMP WITH TIME ZONE,
    challenge TEXT,
    challenge_method TEXT,
    plugin_id UUID REFERENCES plugins (id) ON DELETE CASCADE,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, code),
    FOREIGN KEY (credential_id, ws_id) REFERENCES oauth2_credentials (id, ws_id)
        ON DELETE CASCADE,
    FOREIGN KEY (service_id, ws_id) REFERENCES services (id, ws_id) ON DELETE CASCADE
);
CREATE TABLE oauth2_tokens (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    credential_id UUID,
    service_id UUID,
    access_token TEXT,
    refresh_token TEXT,
    token_type TEXT,
    expires_in INTEGER,
    authenticated_userid TEXT,
    scope TEXT,
    ttl TIMESTAMP WITH TIME ZONE,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, access_token),
    UNIQUE (ws_id, refresh_token),
    FOREIGN KEY (credential_id, ws_id) REFERENCES oauth2_credentials (id, ws_id)
        ON DELETE CASCADE,
    FOREIGN KEY (service_id, ws_id) REFERENCES services (id, ws_id) ON DELETE CASCADE
);
CREATE INDEX oauth2_tokens_ttl_idx ON oauth2_tokens (ttl);
CREATE TABLE keyauth_credentials (
    id UUID PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT (CURRENT_TIMESTAMP(0) AT TIME ZONE 'UTC'),
    consumer_id UUID,
    key TEXT,
    tags TEXT[],
    ttl TIMESTAMP WITH TIME ZONE,
    ws_id UUID REFERENCES workspaces (id),
    UNIQUE (id, ws_id),
    UNIQUE (ws_id, key),
    FOREIGN KEY (consumer_id, ws_id) REFERENCES consumers (id, ws_id) ON DELETE CASCADE
);
"""


def kong_hash(secret: str, salt: bytes | None = None) -> str:
    """A client secret as Kong's oauth2 plugin stores it with hash_secret = true."""
    salt = secrets.token_bytes(16) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, 10_000, 32)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=")

    return f"$pbkdf2-sha512$i=10000,l=32${b64(salt)}${b64(derived)}"


def kong_token() -> str:
    """A token as Kong's random_string() makes them: 32 hex digits."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Token:
    access: str
    refresh: str | None
    id: str


class KongDb:
    """Kong's tables on an open asyncpg connection to the schema; rows in workspace `ws`."""

    def __init__(self, db: Any, ws: str) -> None:
        self.db = db
        self.ws = ws

    @classmethod
    async def create(cls, db: Any) -> KongDb:
        await db.execute(DDL)
        ws = str(uuid.uuid4())
        await db.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'default')", ws)
        return cls(db, ws)

    async def workspace(self, name: str) -> KongDb:
        ws = str(uuid.uuid4())
        await self.db.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, name)
        return KongDb(self.db, ws)

    async def consumer(
        self, username: str | None, custom_id: str | None = None, *, created_at: float = 0
    ) -> str:
        cid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO consumers (id, username, custom_id, tags, created_at, ws_id)"
            " VALUES ($1, $2, $3, $4, to_timestamp($5), $6)",
            cid,
            username,
            custom_id,
            ["kong"],
            created_at or time.time() - 86400,
            self.ws,
        )
        return cid

    async def credential(
        self,
        consumer_id: str,
        client_id: str,
        secret: str,
        *,
        hashed: bool,
        client_type: str = "confidential",
        created_at: float = 0,
    ) -> str:
        cred_id = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO oauth2_credentials (id, name, consumer_id, client_id, client_secret,"
            " redirect_uris, tags, client_type, hash_secret, created_at, ws_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10), $11)",
            cred_id,
            f"{client_id} app",
            consumer_id,
            client_id,
            kong_hash(secret) if hashed else secret,
            ["https://app.example/cb"],
            ["imported"],
            client_type,
            hashed,
            created_at or time.time() - 3600,
            self.ws,
        )
        return cred_id

    async def service(self, name: str, host: str, port: int, path: str, **extra: Any) -> str:
        sid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO services (id, name, protocol, host, port, path, retries,"
            " connect_timeout, write_timeout, read_timeout, created_at, ws_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, 5, 60000, 60000, 60000, now(), $7)",
            sid,
            name,
            extra.get("protocol", "http"),
            host,
            port,
            path,
            self.ws,
        )
        return sid

    async def route(self, service_id: str, name: str, paths: Sequence[str], **extra: Any) -> str:
        rid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO routes (id, name, service_id, protocols, paths, hosts, methods,"
            " regex_priority, strip_path, preserve_host, https_redirect_status_code,"
            " request_buffering, response_buffering, created_at, ws_id)"
            " VALUES ($1, $2, $3, '{http,https}', $4, $5, $6, 0, $7, $8, 426, true, true,"
            " now(), $9)",
            rid,
            name,
            service_id,
            list(paths),
            extra.get("hosts"),
            extra.get("methods"),
            extra.get("strip_path", True),
            extra.get("preserve_host", False),
            self.ws,
        )
        return rid

    async def plugin(
        self,
        name: str,
        config: dict[str, Any],
        *,
        service_id: str | None = None,
        route_id: str | None = None,
    ) -> str:
        pid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO plugins (id, name, service_id, route_id, config, enabled, protocols,"
            " cache_key, ws_id) VALUES ($1, $2, $3, $4, $5::jsonb, true, '{grpc,grpcs,http,https}',"
            " $6, $7)",
            pid,
            name,
            service_id,
            route_id,
            json.dumps(config),
            f"plugins:{name}:{route_id or ''}:{service_id or ''}::{self.ws}",
            self.ws,
        )
        return pid

    async def token(
        self,
        credential_id: str,
        service_id: str | None,
        *,
        created_at: float,
        expires_in: int,
        refresh: bool = True,
        ttl: float | None = None,
        userid: str | None = "1",
        scope: str | None = "read",
    ) -> Token:
        made = Token(kong_token(), kong_token() if refresh else None, str(uuid.uuid4()))
        await self.db.execute(
            "INSERT INTO oauth2_tokens (id, credential_id, service_id, access_token,"
            " refresh_token, token_type, expires_in, authenticated_userid, scope, created_at,"
            " ttl, ws_id) VALUES ($1, $2, $3, $4, $5, 'bearer', $6, $7, $8, to_timestamp($9),"
            " to_timestamp($10), $11)",
            made.id,
            credential_id,
            service_id,
            made.access,
            made.refresh,
            expires_in,
            userid,
            scope,
            created_at,
            ttl,
            self.ws,
        )
        return made

    async def tokens(
        self, credential_id: str, service_id: str, count: int, created_at: float
    ) -> None:
        """`count` live tokens (with refresh tokens) at once, by COPY, as a busy Kong has."""
        created = datetime.fromtimestamp(created_at, UTC)
        ttl = datetime.fromtimestamp(created_at + 1_209_600, UTC)
        cred, service, ws = uuid.UUID(credential_id), uuid.UUID(service_id), uuid.UUID(self.ws)
        kind = ("bearer", 7200)
        times = (created, ttl, ws)
        records = [
            (uuid.uuid4(), cred, service, kong_token(), kong_token(), *kind, str(n), "read", *times)
            for n in range(count)
        ]
        columns = ["id", "credential_id", "service_id", "access_token", "refresh_token"]
        columns += ["token_type", "expires_in", "authenticated_userid", "scope", "created_at"]
        columns += ["ttl", "ws_id"]
        await self.db.copy_records_to_table("oauth2_tokens", records=records, columns=columns)

    async def key_auth(self, consumer_id: str) -> None:
        await self.db.execute(
            "INSERT INTO keyauth_credentials (id, consumer_id, key, ws_id) VALUES ($1, $2, $3, $4)",
            str(uuid.uuid4()),
            consumer_id,
            kong_token(),
            self.ws,
        )

    async def code(self, credential_id: str, service_id: str) -> None:
        await self.db.execute(
            "INSERT INTO oauth2_authorization_codes (id, credential_id, service_id, code,"
            " authenticated_userid, scope, ttl, ws_id)"
            " VALUES ($1, $2, $3, $4, '1', 'read', now() + interval '5 minutes', $5)",
            str(uuid.uuid4()),
            credential_id,
            service_id,
            kong_token(),
            self.ws,
        )
