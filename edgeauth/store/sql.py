"""The SQL both backends run, written once, and the few things each backend's dialect says
differently.

No I/O. Statements use SQLite's numbered parameters (`?1`, `?2`; a number may repeat), which
the PostgreSQL connection rewrites as its `$1`, `$2` (the local backend, where a statement
costs microseconds, runs them as written). Lists are keyset-paginated on (created_at, id)
ascending with rows.py's cursors. Only identifiers from the store (never caller input) are
formatted into SQL; values are always bound parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from edgeauth.store.base import TagFilter, TokenFilter
from edgeauth.store.rows import decode_cursor, page_size

# A tag filter in a dialect: (column, the tags sorted, any of them rather than all) →
# the condition, with `?` for each of its parameters, and those parameters.
TagsMatch = Callable[[str, Sequence[str], bool], tuple[str, list[object]]]


@dataclass
class Where:
    """Conditions joined by AND, with their parameters in order. A condition marks each of
    its parameters with a bare `?`; `sql()` numbers them after any given at the start."""

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
