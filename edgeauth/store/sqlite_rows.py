"""Between SQLite rows and edgeauth's records, the dynamic SQL of the admin lists, and the
pure rules both backends share (patches, saves checked against their client, dropped redirect
URIs).

No I/O. Lists are keyset-paginated on (created_at, id) ascending; a page cursor is the
unpadded urlsafe base64 of the JSON `[created_at, id]` of the last row of the previous page.
Only identifiers from this module (never caller input) are formatted into SQL; values are
always bound parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from edgeauth.errors import ClientChanged, StoreError
from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store.base import NewCredential, Page, TagFilter, TokenFilter

T = TypeVar("T")

MAX_PAGE = 1000
_MAX_CURSOR_CHARS = 512
_INT64 = 2**63 - 1

_CONSUMER_FIELDS = tuple(field.name for field in fields(Consumer))
_CREDENTIAL_FIELDS = tuple(field.name for field in fields(Credential))
_TOKEN_FIELDS = tuple(field.name for field in fields(TokenRecord))
_CODE_FIELDS = tuple(field.name for field in fields(AuthCode))


# records ------------------------------------------------------------------------------------


def token_params(record: TokenRecord) -> dict[str, object]:
    """Named parameters of TOKENS_INSERT; a flat copy (dataclasses.asdict deep-copies, and
    was 3 % of an issuance)."""
    return {name: getattr(record, name) for name in _TOKEN_FIELDS}


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


def identity(given_id: str | None, given_created_at: int | None) -> tuple[str, int]:
    """The id and created_at of a new consumer or credential: those given (an import keeps
    Kong's), else a new uuid and now."""
    entity_id = str(uuid.uuid4()) if given_id is None else given_id
    created_at = int(time.time()) if given_created_at is None else int(given_created_at)
    return entity_id, created_at


def to_credential(row: sqlite3.Row) -> Credential:
    decoded = {
        "redirect_uris": _strings(row["redirect_uris"]),
        "client_type": ClientType(row["client_type"]),
        "tags": _strings(row["tags"]),
    }
    return Credential(**{**_columns(row, _CREDENTIAL_FIELDS), **decoded})


def to_token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(**_columns(row, _TOKEN_FIELDS))


def to_token_view(row: sqlite3.Row) -> TokenView:
    """A row of sqlite_schema.TOKEN_VIEWS."""
    return TokenView(
        token=to_token(row),
        client_id=row["client_id"],
        consumer_id=row["consumer_id"],
        username=row["username"],
        custom_id=row["custom_id"],
    )


def to_code(row: sqlite3.Row) -> AuthCode:
    return AuthCode(**_columns(row, _CODE_FIELDS))


# saves checked against their client ---------------------------------------------------------
def expected_client(credential_id: str, issued_to: Credential | None) -> Credential | None:
    """The `issued_to` of a save; a credential other than the row's is the caller's bug."""
    if issued_to is not None and issued_to.id != credential_id:
        raise StoreError("issued_to is not the credential the token or code belongs to")
    return issued_to


def refusal(
    clients: Mapping[str, Credential], expected: Credential | None, *, redirects: bool
) -> ClientChanged | None:
    """Why a save checked against `expected` must not land, now that the credentials are
    `clients` (by id): its credential is gone, or has another owner, secret hash or client
    type (and, for a code, other redirect URIs) than the request was checked against. None
    when it may land."""
    if expected is None:
        return None
    current = clients.get(expected.id)
    if current is not None and _issued_as(current, redirects) == _issued_as(expected, redirects):
        return None
    return ClientChanged()


def grants_void(old: Credential, new: Credential) -> bool:
    """Whether what was granted to `old` does not belong to `new`: another owner, secret hash
    or client type (its tokens are revoked and its codes dropped)."""
    return _issued_as(old, False) != _issued_as(new, False)


def _issued_as(credential: Credential, redirects: bool) -> tuple[object, ...]:
    fingerprint = (credential.consumer_id, credential.secret_hash, credential.client_type)
    return (*fingerprint, credential.redirect_uris) if redirects else fingerprint


def dropped_redirects(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """The redirect URIs a change removed, and whether the default (the old first one) is
    among them: codes issued without a redirect_uri went to that default."""
    removed = tuple(uri for uri in old if uri not in new)
    return removed, bool(old) and old[0] in removed


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


def patch_values(
    patch: Mapping[str, object], columns: Mapping[str, Callable[[Any], object]]
) -> dict[str, object]:
    """The patch as column values; a key that is no patchable column is a caller's bug."""
    unknown = sorted(set(patch) - set(columns))
    if unknown:
        raise StoreError(f"not a patchable field: {', '.join(unknown)}")
    return {name: columns[name](value) for name, value in patch.items()}


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


def page_size(size: int) -> int:
    return max(1, min(int(size), MAX_PAGE))


def page(rows: list[sqlite3.Row], size: int, record: Callable[[sqlite3.Row], T]) -> Page[T]:
    """The page of a page_query's rows; `next` only if a further row exists."""
    size = page_size(size)
    kept = rows[:size]
    cursor = None
    if len(rows) > size:
        cursor = encode_cursor(kept[-1]["created_at"], kept[-1]["id"])
    return Page(items=tuple(record(row) for row in kept), next=cursor)


def encode_cursor(created_at: float, row_id: str) -> str:
    text = json.dumps([created_at, row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[int | float, str]:
    """The key a cursor holds; StoreError (the caller's input, never a driver error) if it
    is not one this module made."""
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        value = json.loads(raw, parse_constant=_no_constant)
        if not (isinstance(value, list) and len(value) == 2):
            raise ValueError("not a pair")
        created_at, row_id = value
        if type(created_at) not in (int, float) or not isinstance(row_id, str):
            raise ValueError("wrong types")
        if not math.isfinite(created_at) or abs(created_at) > _INT64:
            raise ValueError("out of range")
        row_id.encode("utf-8")  # lone surrogates cannot be bound
    except (ValueError, TypeError, binascii.Error) as exc:
        raise StoreError("malformed page cursor") from exc
    return created_at, row_id


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")
