"""The PostgreSQL store's schema (forward-only migrations), its SQL, and row mapping.

No I/O here: `postgres.py` runs these. The tables, columns and indexes are SQLite's
(sqlite_schema.py) in PostgreSQL types: JSON lists become text[], BLOB bytea, REAL double
precision; ids are COLLATE "C" so that keyset pages sort as SQLite and Python do (by code
point), whatever the database's collation. Token and code rows, pages and cursors are
rows.py's (same cursor format, same order); only identifiers from this module are formatted
into SQL, values are always bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple
from typing import Any

from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord
from edgeauth.store.base import NewCredential
from edgeauth.store.rows import CODE_FIELDS, TOKEN_FIELDS

Row = Mapping[str, Any]  # an asyncpg Record

_V1 = """
CREATE TABLE consumers (
    id TEXT COLLATE "C" PRIMARY KEY,
    username TEXT UNIQUE,
    custom_id TEXT UNIQUE,
    tags TEXT[] NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX consumers_created ON consumers (created_at, id);
CREATE INDEX consumers_tags ON consumers USING gin (tags);
CREATE TABLE credentials (
    id TEXT COLLATE "C" PRIMARY KEY,
    consumer_id TEXT COLLATE "C" NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    redirect_uris TEXT[] NOT NULL DEFAULT '{}',
    client_type TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    tags TEXT[] NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX credentials_created ON credentials (created_at, id);
CREATE INDEX credentials_consumer_created ON credentials (consumer_id, created_at, id);
CREATE INDEX credentials_tags ON credentials USING gin (tags);
CREATE TABLE tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    access_digest BYTEA NOT NULL UNIQUE CHECK (octet_length(access_digest) = 32),
    refresh_digest BYTEA UNIQUE CHECK (octet_length(refresh_digest) = 32),
    prefix TEXT NOT NULL,
    credential_id TEXT COLLATE "C" NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    family_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    refresh_expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    refresh_used_at DOUBLE PRECISION
);
CREATE INDEX tokens_created ON tokens (created_at, id);
CREATE INDEX tokens_credential_created ON tokens (credential_id, created_at, id);
CREATE INDEX tokens_userid_created ON tokens (authenticated_userid, created_at, id);
CREATE INDEX tokens_service_created ON tokens (service, created_at, id);
CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE TABLE codes (
    digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    credential_id TEXT COLLATE "C" NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    authenticated_userid TEXT,
    scope TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX codes_credential_id ON codes (credential_id);
CREATE TABLE revocations (
    seq BIGINT PRIMARY KEY,
    access_digest BYTEA NOT NULL CHECK (octet_length(access_digest) = 32),
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX revocations_at ON revocations (at);
CREATE TABLE revocation_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
INSERT INTO revocation_head (seq) VALUES (0);
"""

# A refresh token's own scope, when wider than its access token's (TokenRecord.refresh_scope).
_V2 = """
ALTER TABLE tokens ADD COLUMN refresh_scope TEXT;
"""

# Forward-only: append, never edit. The one row of edgeauth_schema counts those applied.
MIGRATIONS: tuple[str, ...] = (_V1, _V2)

# Migrations take this transaction-level advisory lock (class, hashtext(schema)), so nodes
# starting at once take turns, and deployments in other schemas do not wait on each other.
MIGRATION_LOCK_CLASS = 0x0EA0
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS edgeauth_schema (version INTEGER NOT NULL)"
SCHEMA_VERSION = "SELECT version FROM edgeauth_schema"

# consumers and credentials ------------------------------------------------------------------
INSERT_CONSUMER = """INSERT INTO consumers (id, username, custom_id, tags, created_at)
VALUES ($1, $2, $3, $4, $5)"""
UPSERT_CONSUMER = f"""{INSERT_CONSUMER} ON CONFLICT (username)
DO UPDATE SET custom_id = excluded.custom_id, tags = excluded.tags RETURNING *"""
# Upserts of one username take turns: ON CONFLICT settles a race on its arbiter (username)
# only, and two nodes seeding the same consumer at once would clash on custom_id instead.
SEED_LOCK_CLASS = 0x0EA1
LOCK_USERNAME = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
GET_CONSUMER = """SELECT * FROM consumers WHERE id = $1 OR username = $1
ORDER BY id = $1 DESC LIMIT 1"""
INSERT_CREDENTIAL = """INSERT INTO credentials (id, consumer_id, name, client_id, secret_hash,
    redirect_uris, client_type, tags, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *"""
# The seed's insert: nothing (and no error) when a concurrent seed inserted it first.
SEED_CREDENTIAL = INSERT_CREDENTIAL.replace(
    "RETURNING *", "ON CONFLICT (client_id) DO NOTHING RETURNING *"
)
# Parameters: credential_params without client_id and created_at (update_params).
UPDATE_CREDENTIAL = """UPDATE credentials SET consumer_id = $2, name = $3, secret_hash = $4,
    redirect_uris = $5, client_type = $6, tags = $7
WHERE id = $1 RETURNING *"""
# FOR UPDATE also holds back concurrent inserts that reference the row (their foreign-key
# check waits), so that the tokens read next are all the tokens a delete or revoke removes.
LOCK_CONSUMER = "SELECT * FROM consumers WHERE id = $1 FOR UPDATE"
LOCK_CONSUMER_NAMED = "SELECT * FROM consumers WHERE username = $1 FOR UPDATE"
LOCK_CREDENTIALS_OF = "SELECT id FROM credentials WHERE consumer_id = $1 FOR UPDATE"
LOCK_CREDENTIAL = "SELECT * FROM credentials WHERE id = $1 FOR UPDATE"
LOCK_CLIENT = "SELECT * FROM credentials WHERE client_id = $1 FOR UPDATE"

# tokens -------------------------------------------------------------------------------------
_MARKS = ", ".join(f"${i}" for i in range(1, len(TOKEN_FIELDS) + 1))
TOKENS_INSERT = f"INSERT INTO tokens ({', '.join(TOKEN_FIELDS)}) VALUES ({_MARKS})"  # noqa: S608
# A migration's bulk insert: one array per column ($n, in TOKEN_FIELDS order, import_params),
# a row whose id or a digest is already stored left out. A TokenRecord field missing here
# fails at import time.
_TOKEN_TYPES = {
    "id": "text",
    "access_digest": "bytea",
    "refresh_digest": "bytea",
    "prefix": "text",
    "credential_id": "text",
    "service": "text",
    "authenticated_userid": "text",
    "scope": "text",
    "family_id": "text",
    "created_at": "float8",
    "expires_at": "float8",
    "refresh_expires_at": "float8",
    "revoked_at": "float8",
    "refresh_used_at": "float8",
    "refresh_scope": "text",
}
_ARRAYS = ", ".join(f"${i}::{_TOKEN_TYPES[name]}[]" for i, name in enumerate(TOKEN_FIELDS, 1))
IMPORT_TOKENS = f"""INSERT INTO tokens ({", ".join(TOKEN_FIELDS)})
SELECT * FROM unnest({_ARRAYS}) ON CONFLICT DO NOTHING"""  # noqa: S608


def _checked_insert(table: str, columns: tuple[str, ...], *, redirects: bool) -> str:
    """The insert of a row ($1...) checked against the client its request was checked
    against (client_params, after the row's): nothing is inserted (no row returned) unless
    the credential still has that owner, secret hash and type, and with `redirects` those
    redirect URIs. FOR SHARE conflicts with the FOR UPDATE every writer of a credential takes
    first: a change in flight makes the insert wait and re-check the committed row, and an
    insert in flight makes the change wait for it (and then see its row)."""
    n = len(columns)
    marks = ", ".join(f"${i}" for i in range(1, n + 1))
    uris = f" AND redirect_uris = ${n + 5}" if redirects else ""
    return f"""WITH client AS (
    SELECT 1 FROM credentials WHERE id = ${n + 1} AND consumer_id = ${n + 2}
        AND secret_hash IS NOT DISTINCT FROM ${n + 3} AND client_type = ${n + 4}{uris}
    FOR SHARE
)
INSERT INTO {table} ({", ".join(columns)}) SELECT {marks} FROM client RETURNING 1"""  # noqa: S608


TOKENS_INSERT_CHECKED = _checked_insert("tokens", TOKEN_FIELDS, redirects=False)
VIEWS_SELECT = """SELECT t.*, c.client_id, c.consumer_id, k.username, k.custom_id
FROM tokens t JOIN credentials c ON c.id = t.credential_id
JOIN consumers k ON k.id = c.consumer_id"""
# Both: the row holding a live refresh token (not revoked, not rotated away, not expired).
# Under READ COMMITTED a waiting UPDATE or FOR UPDATE re-checks its WHERE on the row the
# winner committed, so of concurrent callers exactly one matches.
ROTATE = """UPDATE tokens SET revoked_at = $2, refresh_used_at = $2
WHERE refresh_digest = $1 AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > $2)
RETURNING *"""
FIND_LIVE_REFRESH = """SELECT id, access_digest FROM tokens
WHERE refresh_digest = $1 AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > $2)
FOR UPDATE"""
REPLACE = """UPDATE tokens SET access_digest = $2, prefix = $3, expires_at = $4, created_at = $5
WHERE id = $1 RETURNING *"""
LIVE_OF_CONSUMER = """SELECT t.access_digest FROM tokens t
JOIN credentials c ON c.id = t.credential_id WHERE c.consumer_id = $1 AND t.revoked_at IS NULL"""
LIVE_OF_CREDENTIAL = """SELECT access_digest FROM tokens
WHERE credential_id = $1 AND revoked_at IS NULL"""
REVOKE_CREDENTIAL = """UPDATE tokens SET revoked_at = $1
WHERE credential_id = $2 AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_FAMILY = """UPDATE tokens SET revoked_at = $1
WHERE family_id = $2 AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_BY_ID = """UPDATE tokens SET revoked_at = $1
WHERE id = $2 AND revoked_at IS NULL RETURNING access_digest"""

# codes --------------------------------------------------------------------------------------
_CODE_MARKS = ", ".join(f"${i}" for i in range(1, len(CODE_FIELDS) + 1))
INSERT_CODE = f"INSERT INTO codes ({', '.join(CODE_FIELDS)}) VALUES ({_CODE_MARKS})"  # noqa: S608
INSERT_CODE_CHECKED = _checked_insert("codes", CODE_FIELDS, redirects=True)
TAKE_CODE = "DELETE FROM codes WHERE digest = $1 RETURNING *"
# A credential's codes sent to the redirect URIs $2, and (when $3) those sent to its default,
# the codes without a redirect_uri.
DROP_CODES_TO = """DELETE FROM codes WHERE credential_id = $1
    AND (redirect_uri = ANY($2::text[]) OR ($3 AND redirect_uri IS NULL))"""

# revocation log -----------------------------------------------------------------------------
# One statement: advance the head row (its row lock is held to COMMIT, so log writers commit
# in seq order, one at a time), append the digests under consecutive seqs, and NOTIFY each
# payload chunk ($3 channel, $4 payloads), delivered at COMMIT and never on rollback.
LOG_REVOCATIONS = """WITH head AS (
    UPDATE revocation_head SET seq = seq + cardinality($1::bytea[]) RETURNING seq
), logged AS (
    INSERT INTO revocations (seq, access_digest, at)
    SELECT head.seq - cardinality($1::bytea[]) + d.n, d.digest, $2
    FROM head, unnest($1::bytea[]) WITH ORDINALITY AS d (digest, n)
    RETURNING seq
)
SELECT (SELECT count(*) FROM logged), count(pg_notify($3, p)) FROM unnest($4::text[]) AS p"""
REVOCATION_HEAD = "SELECT seq FROM revocation_head"
REVOCATIONS_SINCE = """SELECT seq, access_digest FROM revocations
WHERE seq > $1 ORDER BY seq LIMIT $2"""

# housekeeping -------------------------------------------------------------------------------
SWEEP_TOKENS = """DELETE FROM tokens
WHERE (revoked_at IS NOT NULL AND revoked_at <= $1)
   OR (expires_at IS NOT NULL AND expires_at <= $1 AND (refresh_digest IS NULL
       OR (refresh_expires_at IS NOT NULL AND refresh_expires_at <= $1)))"""
SWEEP_CODES = "DELETE FROM codes WHERE expires_at <= $1"
SWEEP_REVOCATIONS = "DELETE FROM revocations WHERE at <= $1"


# records ------------------------------------------------------------------------------------
def to_consumer(row: Row) -> Consumer:
    return Consumer(
        id=row["id"],
        username=row["username"],
        custom_id=row["custom_id"],
        tags=tuple(row["tags"]),
        created_at=int(row["created_at"]),
    )


def credential_params(new: NewCredential, credential_id: str, created_at: int) -> list[object]:
    """INSERT_CREDENTIAL's (and SEED_CREDENTIAL's) parameters."""
    return [
        credential_id,
        new.consumer_id,
        new.name,
        new.client_id,
        new.secret_hash,
        list(new.redirect_uris),
        str(new.client_type),
        list(new.tags),
        created_at,
    ]


def update_params(new: NewCredential, credential_id: str) -> list[object]:
    """UPDATE_CREDENTIAL's parameters."""
    params = credential_params(new, credential_id, 0)
    return [*params[:3], *params[4:8]]


def to_credential(row: Row) -> Credential:
    return Credential(
        id=row["id"],
        consumer_id=row["consumer_id"],
        name=row["name"],
        client_id=row["client_id"],
        secret_hash=row["secret_hash"],
        redirect_uris=tuple(row["redirect_uris"]),
        client_type=ClientType(row["client_type"]),
        tags=tuple(row["tags"]),
        created_at=int(row["created_at"]),
    )


def token_params(record: TokenRecord) -> tuple[object, ...]:
    return astuple(record)


def import_params(records: Sequence[TokenRecord]) -> list[list[object]]:
    """IMPORT_TOKENS's parameters: each column's values, in TOKEN_FIELDS order."""
    rows = [astuple(record) for record in records]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def code_params(code: AuthCode) -> tuple[object, ...]:
    return astuple(code)


def client_params(expected: Credential, *, redirects: bool) -> list[object]:
    """The client parameters of TOKENS_INSERT_CHECKED (and, with `redirects`, of
    INSERT_CODE_CHECKED)."""
    c = expected
    params: list[object] = [c.id, c.consumer_id, c.secret_hash, str(c.client_type)]
    return [*params, list(c.redirect_uris)] if redirects else params


# filters ------------------------------------------------------------------------------------
def tags_match(column: str, wanted: Sequence[str], any_: bool) -> tuple[str, list[object]]:
    """sql.TagsMatch on a text[] column."""
    return f"{column} {'&&' if any_ else '@>'} ?::text[]", [list(wanted)]
