"""Between SQLite rows and edgeauth's records where SQLite differs (JSON lists), and the
dynamic SQL of the admin lists and patches.

No I/O. Row mapping and pages both backends share are rows.py's, their rules rules.py's.
Only identifiers from this module (never caller input) are formatted into SQL; values are
always bound parameters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgeauth.models import ClientType, Consumer, Credential, TokenRecord
from edgeauth.store.base import NewCredential, TagFilter, TokenFilter
from edgeauth.store.rows import TOKEN_FIELDS, decode_cursor, page_size

_CONSUMER_FIELDS = tuple(field.name for field in fields(Consumer))
_CREDENTIAL_FIELDS = tuple(field.name for field in fields(Credential))


# records ------------------------------------------------------------------------------------


def token_params(record: TokenRecord) -> dict[str, object]:
    """Named parameters of TOKENS_INSERT; a flat copy (dataclasses.asdict deep-copies, and
    was 3 % of an issuance)."""
    return {name: getattr(record, name) for name in TOKEN_FIELDS}


def json_list(values: tuple[str, ...]) -> str:
    return json.dumps(list(values))


def _strings(text: str) -> tuple[str, ...]:
    return tuple(str(value) for value in json.loads(text))


def _columns(row: sqlite3.Row, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


def to_consumer(row: sqlite3.Row) -> Consumer:
    return Consumer(**{**_columns(row, _CONSUMER_FIELDS), "tags": _strings(row["tags"])})


def credential_params(new: NewCredential, credential_id: str, created_at: int) -> dict[str, Any]:
    params = asdict(new)
    params.update(
        id=credential_id,
        redirect_uris=json_list(new.redirect_uris),
        client_type=str(new.client_type),
        tags=json_list(new.tags),
        created_at=created_at,
    )
    return params


def to_credential(row: sqlite3.Row) -> Credential:
    decoded = {
        "redirect_uris": _strings(row["redirect_uris"]),
        "client_type": ClientType(row["client_type"]),
        "tags": _strings(row["tags"]),
    }
    return Credential(**{**_columns(row, _CREDENTIAL_FIELDS), **decoded})


# patches ------------------------------------------------------------------------------------
def _same(value: Any) -> object:
    return value


def _text(value: Any) -> object:
    return str(value)


CONSUMER_PATCH: Mapping[str, Callable[[Any], object]] = {
    "username": _same,
    "custom_id": _same,
    "tags": json_list,
}
CREDENTIAL_PATCH: Mapping[str, Callable[[Any], object]] = {
    "name": _same,
    "client_id": _same,
    "secret_hash": _same,
    "redirect_uris": json_list,
    "client_type": _text,  # an unknown type fails the CHECK constraint: a StoreError
    "tags": json_list,
}


def update_query(table: str, values: Mapping[str, object], returning: str) -> str:
    """UPDATE of the row `:id` setting `values` (names from a patch table or the store)."""
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    return f"UPDATE {table} SET {assignments} WHERE id = :id RETURNING {returning}"  # noqa: S608


# filters and pages --------------------------------------------------------------------------
@dataclass
class Where:
    """Conditions joined by AND, with their positional parameters in order."""

    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def add(self, condition: str, *params: object) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def tags_where(where: Where, column: str, tags: TagFilter | None) -> None:
    """All of `tags.tags` in the JSON array `column`, or at least one if `tags.any`."""
    if tags is None or not tags.tags:
        return
    wanted = sorted(set(tags.tags))
    marks = ", ".join("?" * len(wanted))
    present = f"FROM json_each({column}) WHERE value IN ({marks})"
    if tags.any:
        where.add(f"EXISTS (SELECT 1 {present})", *wanted)
    else:
        where.add(f"(SELECT count(DISTINCT value) {present}) = ?", *wanted, len(wanted))


def tokens_where(which: TokenFilter, now: float, table: str) -> Where:
    """`which` on the tokens table (or alias) `table`. Active: not revoked and the access
    token not expired at `now` (a live refresh token does not make an expired one active)."""
    where = Where()
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
        where.add(f"({live})" if which.active else f"NOT ({live})", now)
    return where


def revoke_query(which: TokenFilter, now: float) -> tuple[str, list[object]]:
    """Revoke the unrevoked rows matching `which` (expired ones too, unless `which.active`:
    an expired access token may still hold a live refresh token)."""
    where = tokens_where(which, now, "tokens")
    where.add("tokens.revoked_at IS NULL")
    sql = f"UPDATE tokens SET revoked_at = ?{where.sql()} RETURNING access_digest"  # noqa: S608
    return sql, [now, *where.params]


def page_query(
    select: str, where: Where, table: str, after: str | None, size: int
) -> tuple[str, list[object]]:
    """`select` filtered by `where`, after the cursor, in key order, one row more than the
    page (so that the last page is known to be the last). Raises StoreError on a bad cursor."""
    if after is not None:
        created_at, row_id = decode_cursor(after)
        where.add(f"({table}.created_at, {table}.id) > (?, ?)", created_at, row_id)
    sql = f"{select}{where.sql()} ORDER BY {table}.created_at, {table}.id LIMIT ?"
    return sql, [*where.params, page_size(size) + 1]
