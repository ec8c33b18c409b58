"""A store holding many tokens, built fast, for the issue scenario's pre-filled variant.

Not through the API (5 M tokens at the target's 5,000/s would take 17 minutes): an online
copy (sqlite3's backup) of a gateway's fresh store, then one INSERT ... SELECT over a
recursive counter. The new rows have random digests, and ids and family ids shaped as the
issuer makes them (time-ordered UUIDs of their creation time, oauth/issuer.py); credential,
service, scope and expiry are copied from the token already there, the user id is NULL as
for client_credentials, and creation times go back a millisecond a row. The tokens table's
secondary indexes are dropped for the insert and rebuilt after it (one sort each instead of
millions of random inserts); the unique ones stay, so the copy is what the API would leave.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from edgeauth.crypto import PREFIX_CHARS

# A version 7 UUID of the row's creation time (?1 below is replaced by it): its 48-bit
# milliseconds, then random bits (each randomblob call draws afresh).
_MS = "CAST(round(({at}) * 1000) AS INTEGER)"
_V7 = """printf('%08x-%04x-7%s-%s%s-%s', {ms} >> 16, {ms} & 65535,
    substr(lower(hex(randomblob(2))), 2), substr('89ab', 1 + abs(random() % 4), 1),
    substr(lower(hex(randomblob(2))), 2), lower(hex(randomblob(6))))"""


def _v7(at: str) -> str:
    ms = _MS.format(at=at)
    return _V7.format(ms=ms)


_AT = "t.created_at - n.i * 0.001"
FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
INSERT INTO tokens (id, access_digest, prefix, credential_id, service, authenticated_userid,
    scope, family_id, created_at, expires_at)
SELECT {_v7(_AT)}, randomblob(32), substr(lower(hex(randomblob(4))), 1, ?2),
    t.credential_id, t.service, NULL, t.scope, {_v7(_AT)}, {_AT}, t.expires_at
FROM n, (SELECT * FROM tokens ORDER BY created_at LIMIT 1) AS t
"""  # noqa: S608
SECONDARY = """SELECT name, sql FROM sqlite_master
WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL"""


def prefilled_copy(source: Path, target: Path, count: int) -> int:
    """Copy the store `source` (live or not) to `target` and add `count` tokens; the number
    of tokens `target` then holds. `source` must hold at least one token."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target, isolation_level=None)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = OFF")  # no copy of 2 GiB through the WAL
        dst.execute("PRAGMA synchronous = OFF")
        dst.execute("PRAGMA cache_size = -524288")  # KiB: the unique indexes stay in memory
        indexes = dst.execute(SECONDARY).fetchall()
        dst.execute("BEGIN")
        for name, _ in indexes:
            dst.execute(f'DROP INDEX "{name}"')
        dst.execute(FILL, (count, PREFIX_CHARS))
        for _, sql in indexes:
            dst.execute(sql)
        dst.execute("COMMIT")
        dst.execute("PRAGMA journal_mode = WAL")  # as the gateway left it
        return int(dst.execute("SELECT count(*) FROM tokens").fetchone()[0])
