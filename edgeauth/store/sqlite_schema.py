"""The SQLite store's schema (forward-only migrations) and its fixed SQL statements.

No I/O here: `sqlite.py` runs these; `sqlite_rows.py` builds the dynamic parts (filters, pages).
"""

from __future__ import annotations

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

# Forward-only: append, never edit. PRAGMA user_version counts those applied.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)

# consumers and credentials ------------------------------------------------------------------
INSERT_CONSUMER = """INSERT INTO consumers (id, username, custom_id, tags, created_at)
VALUES (?, ?, ?, ?, ?)"""
UPSERT_CONSUMER = f"""{INSERT_CONSUMER} ON CONFLICT (username)
DO UPDATE SET custom_id = excluded.custom_id, tags = excluded.tags RETURNING *"""
INSERT_CREDENTIAL = """INSERT INTO credentials (id, consumer_id, name, client_id, secret_hash,
    redirect_uris, client_type, tags, created_at)
VALUES (:id, :consumer_id, :name, :client_id, :secret_hash, :redirect_uris, :client_type, :tags,
    :created_at) RETURNING *"""
UPDATE_CREDENTIAL = """UPDATE credentials SET consumer_id = :consumer_id, name = :name,
    secret_hash = :secret_hash, redirect_uris = :redirect_uris, client_type = :client_type,
    tags = :tags
WHERE id = :id RETURNING *"""

# tokens -------------------------------------------------------------------------------------
TOKENS_INSERT = """INSERT INTO tokens (id, access_digest, refresh_digest, prefix, credential_id,
    service, authenticated_userid, scope, family_id, created_at, expires_at, refresh_expires_at,
    revoked_at, refresh_used_at, refresh_scope)
VALUES (:id, :access_digest, :refresh_digest, :prefix, :credential_id, :service,
    :authenticated_userid, :scope, :family_id, :created_at, :expires_at, :refresh_expires_at,
    :revoked_at, :refresh_used_at, :refresh_scope)"""
# A migration's bulk insert: a row whose id or a digest is already stored is left out.
IMPORT_TOKENS = f"{TOKENS_INSERT} ON CONFLICT DO NOTHING"
# A token joined with its credential and consumer (a TokenView); callers append WHERE/ORDER.
VIEWS_SELECT = """SELECT t.*, c.client_id, c.consumer_id, k.username, k.custom_id
FROM tokens t JOIN credentials c ON c.id = t.credential_id
JOIN consumers k ON k.id = c.consumer_id"""
# Both: the row holding a live refresh token (not revoked, not rotated away, not expired).
ROTATE = """UPDATE tokens SET revoked_at = :now, refresh_used_at = :now
WHERE refresh_digest = :digest AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > :now)
RETURNING *"""
FIND_LIVE_REFRESH = """SELECT id, access_digest FROM tokens
WHERE refresh_digest = :digest AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > :now)"""
REPLACE = """UPDATE tokens SET access_digest = :access, prefix = :prefix, expires_at = :expires,
    created_at = :now
WHERE id = :id RETURNING *"""
LIVE_OF_CONSUMER = """SELECT t.access_digest FROM tokens t
JOIN credentials c ON c.id = t.credential_id WHERE c.consumer_id = ? AND t.revoked_at IS NULL"""
LIVE_OF_CREDENTIAL = """SELECT access_digest FROM tokens
WHERE credential_id = ? AND revoked_at IS NULL"""
# The credentials whose ids are in a JSON array (what a batch of checked saves expects).
CLIENTS = "SELECT * FROM credentials WHERE id IN (SELECT value FROM json_each(?))"
REVOKE_CREDENTIAL = """UPDATE tokens SET revoked_at = ?
WHERE credential_id = ? AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_FAMILY = """UPDATE tokens SET revoked_at = ?
WHERE family_id = ? AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_BY_ID = """UPDATE tokens SET revoked_at = ?
WHERE id = ? AND revoked_at IS NULL RETURNING access_digest"""

# codes --------------------------------------------------------------------------------------
INSERT_CODE = """INSERT INTO codes (digest, credential_id, service, authenticated_userid, scope,
    redirect_uri, code_challenge, code_challenge_method, created_at, expires_at)
VALUES (:digest, :credential_id, :service, :authenticated_userid, :scope, :redirect_uri,
    :code_challenge, :code_challenge_method, :created_at, :expires_at)"""
# A credential's codes sent to the redirect URIs in a JSON array, and (when the third
# parameter is true) those sent to its default, the codes without a redirect_uri.
DROP_CODES_TO = """DELETE FROM codes WHERE credential_id = ?
    AND (redirect_uri IN (SELECT value FROM json_each(?)) OR (? AND redirect_uri IS NULL))"""

# revocation log -----------------------------------------------------------------------------
LOG_REVOCATION = "INSERT INTO revocations (access_digest, at) VALUES (?, ?)"
# The newest seq ever handed out: still right after the sweep has emptied the table.
REVOCATION_HEAD = """SELECT COALESCE((SELECT MAX(seq) FROM revocations),
    (SELECT seq FROM sqlite_sequence WHERE name = 'revocations'), 0)"""
REVOCATIONS_SINCE = """SELECT seq, access_digest FROM revocations
WHERE seq > ? ORDER BY seq LIMIT ?"""

# housekeeping -------------------------------------------------------------------------------
# Dead: revoked, or expired with its refresh token (if any) expired too, before the cutoff.
SWEEP_TOKENS = """DELETE FROM tokens
WHERE (revoked_at IS NOT NULL AND revoked_at <= :cutoff)
   OR (expires_at IS NOT NULL AND expires_at <= :cutoff AND (refresh_digest IS NULL
       OR (refresh_expires_at IS NOT NULL AND refresh_expires_at <= :cutoff)))"""
SWEEP_CODES = "DELETE FROM codes WHERE expires_at <= ?"
SWEEP_REVOCATIONS = "DELETE FROM revocations WHERE at <= ?"
