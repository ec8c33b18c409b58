"""The PostgreSQL store's schema (forward-only migrations), its dialect of sql.py (written, as
sql.py is, with `?N` parameters), and the statements only it runs (written with PostgreSQL's
own `$N` parameters).

No I/O here: `postgres.py` runs these. The tables, columns and indexes are SQLite's
(sqlite_schema.py) in PostgreSQL types: JSON lists become text[], BLOB bytea, REAL double
precision; ids are COLLATE "C" so that keyset pages sort as SQLite and Python do (by code
point), whatever the database's collation, and rows.py's cursors mean the same on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeauth.models import Credential, TokenRecord
from edgeauth.store.rows import CODE_FIELDS, TOKEN_FIELDS, token_values
from edgeauth.store.sql import DEAD_AT, Dialect

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

# What the sweep reads (as SQLite's _V4): the tokens by when they die of age, and the revoked.
_V3 = f"""
CREATE INDEX tokens_dead_at ON tokens (({DEAD_AT}));
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
"""

# Forward-only: append, never edit. The one row of edgeauth_schema counts those applied.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)

# Migrations take this transaction-level advisory lock (class, hashtext(schema)), so nodes
# starting at once take turns, and deployments in other schemas do not wait on each other.
MIGRATION_LOCK_CLASS = 0x0EA0
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS edgeauth_schema (version INTEGER NOT NULL)"
SCHEMA_VERSION = "SELECT version FROM edgeauth_schema"
DIAGNOSTICS = """SELECT current_setting('statement_timeout') AS statement_timeout,
    current_setting('application_name') AS application_name,
    current_schema() AS schema, (SELECT version FROM edgeauth_schema) AS version"""

# Upserts of one username take turns (the dialect's lock_username) under this class.
SEED_LOCK_CLASS = 0x0EA1

# tokens and codes ---------------------------------------------------------------------------
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
INSERT_CODE_CHECKED = _checked_insert("codes", CODE_FIELDS, redirects=True)


def client_params(expected: Credential, *, redirects: bool) -> list[object]:
    """The client parameters of TOKENS_INSERT_CHECKED (and, with `redirects`, of
    INSERT_CODE_CHECKED)."""
    c = expected
    params: list[object] = [c.id, c.consumer_id, c.secret_hash, str(c.client_type)]
    return [*params, list(c.redirect_uris)] if redirects else params


def import_params(records: Sequence[TokenRecord]) -> list[list[object]]:
    """IMPORT_TOKENS's parameters: each column's values, in TOKEN_FIELDS order."""
    rows = [token_values(record) for record in records]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


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


# the dialect --------------------------------------------------------------------------------
def _tags_match(column: str, wanted: Sequence[str], any_: bool) -> tuple[str, list[object]]:
    return f"{column} {'&&' if any_ else '@>'} ?::text[]", [list(wanted)]


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(value)


# Lists are text[]. Row locks: FOR UPDATE also holds back concurrent inserts that reference
# the row (their foreign-key check waits), so that the tokens read next are all the tokens a
# delete or revoke removes, and a save checked against a credential (FOR SHARE) waits.
POSTGRES = Dialect(
    strings_param=list,
    strings=_strings,
    tags_match=_tags_match,
    drop_codes_to="""DELETE FROM codes WHERE credential_id = ?1
    AND (redirect_uri = ANY(?2::text[]) OR (?3 AND redirect_uri IS NULL))""",
    revocation_head="SELECT seq FROM revocation_head",
    for_update=" FOR UPDATE",
    lock_credentials_of="SELECT id FROM credentials WHERE consumer_id = ?1 FOR UPDATE",
    lock_username=f"SELECT pg_advisory_xact_lock({SEED_LOCK_CLASS}, hashtext(?1))",
)
