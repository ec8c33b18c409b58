"""Between SQLite rows and edgeauth's records where SQLite differs (JSON lists), and the
JSON array form of a tag filter.

No I/O. Row mapping and pages both backends share are rows.py's, their rules rules.py's.
Only identifiers from this module (never caller input) are formatted into SQL; values are
always bound parameters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from edgeauth.models import ClientType, Consumer, Credential, TokenRecord
from edgeauth.store.base import NewCredential
from edgeauth.store.rows import TOKEN_FIELDS

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


# filters and pages --------------------------------------------------------------------------
def tags_match(column: str, wanted: Sequence[str], any_: bool) -> tuple[str, list[object]]:
    """sql.TagsMatch on a JSON array column."""
    present = f"FROM json_each({column}) WHERE value IN ({', '.join('?' * len(wanted))})"
    if any_:
        return f"EXISTS (SELECT 1 {present})", [*wanted]
    return f"(SELECT count(DISTINCT value) {present}) = ?", [*wanted, len(wanted)]
