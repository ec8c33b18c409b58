"""Row mapping and keyset pages, the same for both backends.

No I/O. A row is anything indexed by column name (sqlite3.Row, asyncpg.Record). Lists are
keyset-paginated on (created_at, id) ascending; a page cursor is the unpadded urlsafe base64 of
the JSON `[created_at, id]` of the last row of the previous page, so a cursor from one backend
means the same on the other.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from edgeauth.errors import StoreError
from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord, TokenView
from edgeauth.store.base import Page

T = TypeVar("T")

MAX_PAGE = 1000
_MAX_CURSOR_CHARS = 512
INT64 = 2**63 - 1  # PostgreSQL's bigint; a bound for every integer a client sends

TOKEN_FIELDS = tuple(field.name for field in fields(TokenRecord))
CODE_FIELDS = tuple(field.name for field in fields(AuthCode))


class Row(Protocol):
    """A database row read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


R = TypeVar("R", bound=Row)
Strings = Callable[[Any], tuple[str, ...]]


# records ------------------------------------------------------------------------------------
# A record's values in its statements' parameter order (a flat tuple: dataclasses.astuple
# deep-copies, and a copy of the record was 3 % of an issuance).
token_values: Callable[[TokenRecord], tuple[object, ...]] = attrgetter(*TOKEN_FIELDS)
code_values: Callable[[AuthCode], tuple[object, ...]] = attrgetter(*CODE_FIELDS)


def to_consumer(row: Row, strings: Strings) -> Consumer:
    """`strings` reads a list column as the backend stores it (sql.Dialect.strings)."""
    return Consumer(
        id=row["id"],
        username=row["username"],
        custom_id=row["custom_id"],
        tags=strings(row["tags"]),
        created_at=int(row["created_at"]),
    )


def to_credential(row: Row, strings: Strings) -> Credential:
    return Credential(
        id=row["id"],
        consumer_id=row["consumer_id"],
        name=row["name"],
        client_id=row["client_id"],
        secret_hash=row["secret_hash"],
        redirect_uris=strings(row["redirect_uris"]),
        client_type=ClientType(row["client_type"]),
        tags=strings(row["tags"]),
        created_at=int(row["created_at"]),
    )


def to_token(row: Row) -> TokenRecord:
    return TokenRecord(**{name: row[name] for name in TOKEN_FIELDS})


def to_token_view(row: Row) -> TokenView:
    """A row of sql.VIEWS_SELECT: the token with its client's and consumer's names."""
    return TokenView(
        token=to_token(row),
        client_id=row["client_id"],
        consumer_id=row["consumer_id"],
        username=row["username"],
        custom_id=row["custom_id"],
    )


def to_code(row: Row) -> AuthCode:
    return AuthCode(**{name: row[name] for name in CODE_FIELDS})


# pages --------------------------------------------------------------------------------------
def page_size(size: int) -> int:
    return max(1, min(int(size), MAX_PAGE))


def page(rows: Sequence[R], size: int, record: Callable[[R], T]) -> Page[T]:
    """The page of a page query's rows (one more than the page was asked for); `next` only if
    that further row exists, so the last page is known to be the last."""
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
        if not math.isfinite(created_at) or abs(created_at) > INT64:
            raise ValueError("out of range")
        row_id.encode("utf-8")  # lone surrogates cannot be bound
    except (ValueError, TypeError, binascii.Error) as exc:
        raise StoreError("malformed page cursor") from exc
    return created_at, row_id


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")
