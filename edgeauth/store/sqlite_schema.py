"""The SQLite store's schema (forward-only migrations), its dialect of sql.py, and the few
statements only it runs.

No I/O here: `sqlite.py` runs these. Lists (tags, redirect URIs) are JSON arrays in TEXT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from edgeauth.store.sql import DEAD_AT, TOKENS_INSERT, Dialect

_V1 = """
CREATE TABLE consumers (
    id TEXT PRIMARY KEY,
    username TEXT UNIQUE,
    custom_id TEXT UNIQUE,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    client_type TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    tags TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE INDEX credentials_consumer_id ON credentials (consumer_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    access_digest BLOB NOT NULL UNIQUE CHECK (length(access_digest) = 32),
    refresh_digest BLOB UNIQUE CHECK (refresh_digest IS NULL OR length(refresh_digest) = 32),
    prefix TEXT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    family_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    refresh_expires_at REAL,
    revoked_at REAL,
    refresh_used_at REAL
);
CREATE INDEX tokens_credential_id ON tokens (credential_id);
CREATE INDEX tokens_authenticated_userid ON tokens (authenticated_userid);
CREATE INDEX tokens_service ON tokens (service);
CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE TABLE codes (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX codes_credential_id ON codes (credential_id);
"""

# The revocation log (AUTOINCREMENT: a seq is never reused, even after the sweep empties the
# table), and indexes for the admin lists: keyset order (created_at, id), alone or after each
# filter column. The composite indexes replace the single-column ones of V1 (same prefix).
_V2 = """
CREATE TABLE revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    access_digest BLOB NOT NULL CHECK (length(access_digest) = 32),
    at REAL NOT NULL
);
CREATE INDEX revocations_at ON revocations (at);
CREATE INDEX consumers_created ON consumers (created_at, id);
CREATE INDEX credentials_created ON credentials (created_at, id);
CREATE INDEX credentials_consumer_created ON credentials (consumer_id, created_at, id);
DROP INDEX credentials_consumer_id;
CREATE INDEX tokens_created ON tokens (created_at, id);
CREATE INDEX tokens_credential_created ON tokens (credential_id, created_at, id);
DROP INDEX tokens_credential_id;
CREATE INDEX tokens_userid_created ON tokens (authenticated_userid, created_at, id);
DROP INDEX tokens_authenticated_userid;
CREATE INDEX tokens_service_created ON tokens (service, created_at, id);
DROP INDEX tokens_service;
"""

# A refresh token's own scope, when wider than its access token's (TokenRecord.refresh_scope).
_V3 = """
ALTER TABLE tokens ADD COLUMN refresh_scope TEXT;
"""

# What the sweep reads: the tokens by when they die of age (sql.DEAD_AT, growing with the
# issue time as the created_at indexes do, so an insert appends to it), and the revoked ones
# (partial: a token is indexed only once revoked, so issuing one costs nothing here).
_V4 = f"""
CREATE INDEX tokens_dead_at ON tokens ({DEAD_AT});
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
"""

# Forward-only: append, never edit. PRAGMA user_version counts those applied.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)

# What SQLite runs beside sql.py's statements ------------------------------------------------
# A migration's bulk insert: a row whose id or a digest is already stored is left out.
IMPORT_TOKENS = f"{TOKENS_INSERT} ON CONFLICT DO NOTHING"
# The credentials whose ids are in a JSON array (what a batch of checked saves expects).
CLIENTS = "SELECT * FROM credentials WHERE id IN (SELECT value FROM json_each(?1))"
LOG_REVOCATION = "INSERT INTO revocations (access_digest, at) VALUES (?1, ?2)"


def json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _strings(text: str) -> tuple[str, ...]:
    return tuple(str(value) for value in json.loads(text))


def _tags_match(column: str, wanted: Sequence[str], any_: bool) -> tuple[str, list[object]]:
    present = f"FROM json_each({column}) WHERE value IN ({', '.join('?' * len(wanted))})"
    if any_:
        return f"EXISTS (SELECT 1 {present})", [*wanted]
    return f"(SELECT count(DISTINCT value) {present}) = ?", [*wanted, len(wanted)]


# Lists are JSON arrays. No row locks: every write is BEGIN IMMEDIATE, so writers take turns.
SQLITE = Dialect(
    strings_param=json_list,
    strings=_strings,
    tags_match=_tags_match,
    drop_codes_to="""DELETE FROM codes WHERE credential_id = ?1
    AND (redirect_uri IN (SELECT value FROM json_each(?2)) OR (?3 AND redirect_uri IS NULL))""",
    # The newest seq ever handed out: still right after the sweep has emptied the table.
    revocation_head="""SELECT COALESCE((SELECT MAX(seq) FROM revocations),
    (SELECT seq FROM sqlite_sequence WHERE name = 'revocations'), 0) AS seq""",
)
