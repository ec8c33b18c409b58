"""The SQL both backends run, written once, and the few things each backend's dialect says
differently.

No I/O. Statements, and every Dialect string, use SQLite's numbered parameters (`?1`, `?2`;
a number may repeat), which the PostgreSQL connection rewrites as its `$1`, `$2` (the local
backend, where a statement costs microseconds, runs them as written); a condition given to
`Where` marks its parameters with a bare `?`, which `Where.add` numbers. So shared SQL holds no
literal `?` but those marks: PostgreSQL's jsonb operators `?`, `?|` and `?&`, and a `?` inside
a string literal, cannot be written here. Lists are keyset-paginated on (created_at, id)
ascending with rows.py's cursors. Only identifiers from the store (never caller input) are
formatted into SQL; values are always bound parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeauth.store.base import TagFilter, TokenFilter
from edgeauth.store.rows import CODE_FIELDS, TOKEN_FIELDS, decode_cursor, page_size

# A tag filter in a dialect: (column, the tags sorted, any of them rather than all) →
# the condition for `Where.add`, a bare `?` for each of its parameters, and those parameters.
TagsMatch = Callable[[str, Sequence[str], bool], tuple[str, list[object]]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one backend's SQL says its own way, in the `?N` style of the statements below
    (which run as written on both).

    Row locks: a backend whose writers are not serialized otherwise takes them, so that the
    later of two racing writers sees the earlier one's commit. `for_update` is appended to a
    SELECT of the rows a transaction changes next; `lock_credentials_of` (?1 a consumer)
    holds back tokens being saved for its credentials; `lock_username` (?1) makes upserts of
    one username take turns (ON CONFLICT settles a race on username only, and two seeds at
    once would otherwise clash on custom_id). Empty or None where writers already take turns.
    """

    strings_param: Callable[[Sequence[str]], object]  # a list column's value, to bind
    strings: Callable[[Any], tuple[str, ...]]  # a list column's value, as read
    tags_match: TagsMatch
    drop_codes_to: str  # ?1 credential, ?2 redirect URIs, ?3: also the codes with none
    revocation_head: str  # one row: seq, the newest ever logged
    for_update: str = ""
    lock_credentials_of: str | None = None
    lock_username: str | None = None


def _insert(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join(f"?{i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


# consumers and credentials ------------------------------------------------------------------
INSERT_CONSUMER = """INSERT INTO consumers (id, username, custom_id, tags, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)"""
UPSERT_CONSUMER = f"""{INSERT_CONSUMER} ON CONFLICT (username)
DO UPDATE SET custom_id = excluded.custom_id, tags = excluded.tags RETURNING *"""
GET_CONSUMER = """SELECT * FROM consumers WHERE id = ?1 OR username = ?1
ORDER BY id = ?1 DESC LIMIT 1"""
CONSUMER = "SELECT * FROM consumers WHERE id = ?1"
CONSUMER_NAMED = "SELECT * FROM consumers WHERE username = ?1"
DELETE_CONSUMER = "DELETE FROM consumers WHERE id = ?1"
INSERT_CREDENTIAL = """INSERT INTO credentials (id, client_id, created_at, consumer_id, name,
    secret_hash, redirect_uris, client_type, tags)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING *"""
# The seed's insert: nothing (and no error) when a concurrent seed inserted it first.
SEED_CREDENTIAL = INSERT_CREDENTIAL.replace(
    "RETURNING *", "ON CONFLICT (client_id) DO NOTHING RETURNING *"
)
CREDENTIAL = "SELECT * FROM credentials WHERE id = ?1"
CLIENT = "SELECT * FROM credentials WHERE client_id = ?1"
DELETE_CREDENTIAL = "DELETE FROM credentials WHERE id = ?1"

# tokens -------------------------------------------------------------------------------------
TOKENS_INSERT = _insert("tokens", TOKEN_FIELDS)
# A token joined with its credential and consumer (a TokenView); callers append WHERE/ORDER.
VIEWS_SELECT = """SELECT t.*, c.client_id, c.consumer_id, k.username, k.custom_id
FROM tokens t JOIN credentials c ON c.id = t.credential_id
JOIN consumers k ON k.id = c.consumer_id"""
VIEW = f"{VIEWS_SELECT} WHERE t.id = ?1"
VIEW_OF_ACCESS = f"{VIEWS_SELECT} WHERE t.access_digest = ?1"
HOLDING_REFRESH = "SELECT * FROM tokens WHERE refresh_digest = ?1"
# Both: the row holding a live refresh token (not revoked, not rotated away, not expired).
# A waiting UPDATE (or FOR UPDATE) re-checks its WHERE on the row the winner committed, so
# of concurrent callers exactly one matches.
ROTATE = """UPDATE tokens SET revoked_at = ?2, refresh_used_at = ?2
WHERE refresh_digest = ?1 AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > ?2)
RETURNING *"""
LIVE_REFRESH = """SELECT id, access_digest FROM tokens
WHERE refresh_digest = ?1 AND revoked_at IS NULL
    AND (refresh_expires_at IS NULL OR refresh_expires_at > ?2)"""
REPLACE = """UPDATE tokens SET access_digest = ?2, prefix = ?3, expires_at = ?4, created_at = ?5
WHERE id = ?1 RETURNING *"""
LIVE_OF_CONSUMER = """SELECT t.access_digest FROM tokens t
JOIN credentials c ON c.id = t.credential_id WHERE c.consumer_id = ?1 AND t.revoked_at IS NULL"""
LIVE_OF_CREDENTIAL = """SELECT access_digest FROM tokens
WHERE credential_id = ?1 AND revoked_at IS NULL"""
REVOKE_CREDENTIAL = """UPDATE tokens SET revoked_at = ?1
WHERE credential_id = ?2 AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_FAMILY = """UPDATE tokens SET revoked_at = ?1
WHERE family_id = ?2 AND revoked_at IS NULL RETURNING access_digest"""
REVOKE_BY_ID = """UPDATE tokens SET revoked_at = ?1
WHERE id = ?2 AND revoked_at IS NULL RETURNING access_digest"""

# codes --------------------------------------------------------------------------------------
INSERT_CODE = _insert("codes", CODE_FIELDS)
TAKE_CODE = "DELETE FROM codes WHERE digest = ?1 RETURNING *"
DROP_CODES = "DELETE FROM codes WHERE credential_id = ?1"

# revocation log and housekeeping ------------------------------------------------------------
REVOCATIONS_SINCE = """SELECT seq, access_digest FROM revocations
WHERE seq > ?1 ORDER BY seq LIMIT ?2"""
# When a token dies of age: its access token's expiry, or with a refresh token the later of
# both; NULL (never) if the one that counts never expires. Both schemas index this very
# expression (tokens_dead_at), so that the sweep finds its rows without reading the others.
DEAD_AT = """CASE WHEN refresh_digest IS NULL THEN expires_at
    WHEN refresh_expires_at IS NULL THEN NULL
    WHEN refresh_expires_at > expires_at THEN refresh_expires_at ELSE expires_at END"""
# Dead before the cutoff ?1: expired (refresh included) or revoked; at most ?2 rows a
# statement, each found by its index (tokens_dead_at, the partial tokens_revoked).
SWEEP_EXPIRED = f"""DELETE FROM tokens WHERE id IN (
    SELECT id FROM tokens WHERE {DEAD_AT} <= ?1 LIMIT ?2)"""  # noqa: S608
SWEEP_REVOKED = """DELETE FROM tokens WHERE id IN (
    SELECT id FROM tokens WHERE revoked_at IS NOT NULL AND revoked_at <= ?1 LIMIT ?2)"""
SWEEP_CODES = "DELETE FROM codes WHERE expires_at <= ?1"
SWEEP_REVOCATIONS = """DELETE FROM revocations WHERE seq IN (
    SELECT seq FROM revocations WHERE at <= ?1 LIMIT ?2)"""


@dataclass
class Where:
    """Conditions joined by AND, with their parameters in order. A condition marks each of
    its parameters with a bare `?`; `add()` numbers them after those already bound (given
    at the start, or by earlier conditions and marks)."""

    params: list[object] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)

    def add(self, condition: str, *params: object) -> None:
        pieces = condition.split("?")
        numbered = [pieces[0]]
        for value, piece in zip(params, pieces[1:], strict=True):
            self.params.append(value)
            numbered.append(f"?{len(self.params)}{piece}")
        self.conditions.append("".join(numbered))

    def mark(self, value: object) -> str:
        """Bind `value` outside the conditions (a LIMIT); its numbered mark."""
        self.params.append(value)
        return f"?{len(self.params)}"

    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def tags_where(where: Where, column: str, tags: TagFilter | None, match: TagsMatch) -> None:
    """All of `tags.tags` in the list column `column`, or at least one if `tags.any`."""
    if tags is None or not tags.tags:
        return
    condition, params = match(column, sorted(set(tags.tags)), tags.any)
    where.add(condition, *params)


def tokens_where(which: TokenFilter, now: float, table: str, where: Where) -> Where:
    """`which` on the tokens table (or alias) `table`. Active: not revoked and the access
    token not expired at `now` (a live refresh token does not make an expired one active)."""
    if which.authenticated_userid is not None:
        where.add(f"{table}.authenticated_userid = ?", which.authenticated_userid)
    if which.credential_id is not None:
        where.add(f"{table}.credential_id = ?", which.credential_id)
    if which.consumer_id is not None:
        ids = "SELECT id FROM credentials WHERE consumer_id = ?"
        where.add(f"{table}.credential_id IN ({ids})", which.consumer_id)
    if which.service is not None:
        where.add(f"{table}.service = ?", which.service)
    if which.active is not None:
        unexpired = f"({table}.expires_at IS NULL OR {table}.expires_at > ?)"
        live = f"{table}.revoked_at IS NULL AND {unexpired}"
        where.add(f"({live})" if which.active else f"NOT ({live})", float(now))
    return where


def revoke_query(which: TokenFilter, now: float) -> tuple[str, list[object]]:
    """Revoke the unrevoked rows matching `which` (expired ones too, unless `which.active`:
    an expired access token may still hold a live refresh token)."""
    where = tokens_where(which, now, "tokens", Where([float(now)]))
    where.add("tokens.revoked_at IS NULL")
    sql = f"UPDATE tokens SET revoked_at = ?1{where.sql()} RETURNING access_digest"  # noqa: S608
    return sql, where.params


def page_query(
    select: str, where: Where, table: str, after: str | None, size: int, *, whole: bool
) -> tuple[str, list[object]]:
    """`select` filtered by `where`, after the cursor, in key order, one row more than the
    page (so that the last page is known to be the last). `whole`: created_at holds whole
    seconds (a fractional cursor time is placed between two seconds). Raises StoreError on
    a bad cursor."""
    if after is not None:
        created_at, row_id = decode_cursor(after)
        op = ">"
        if whole:
            if float(created_at).is_integer():
                created_at = int(created_at)
            else:  # after (x.5, id) comes every row of second x + 1 and later: id >= ''
                created_at, row_id, op = math.ceil(created_at), "", ">="
        else:
            created_at = float(created_at)
        where.add(f"({table}.created_at, {table}.id) {op} (?, ?)", created_at, row_id)
    limit = where.mark(page_size(size) + 1)
    sql = f"{select}{where.sql()} ORDER BY {table}.created_at, {table}.id LIMIT {limit}"
    return sql, where.params


def update_query(table: str, values: Mapping[str, object], returning: str) -> str:
    """UPDATE of the row `?1` setting `values` (`?2`...; names from a patch table or the
    store)."""
    assignments = ", ".join(f"{name} = ?{i}" for i, name in enumerate(values, start=2))
    return f"UPDATE {table} SET {assignments} WHERE id = ?1 RETURNING {returning}"  # noqa: S608
