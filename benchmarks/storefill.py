"""A store holding many tokens, built fast, for the issue scenario's pre-filled variant.

Not through the API (5 M tokens at the target's 5,000/s would take 17 minutes): an online
copy (sqlite3's backup) of a gateway's fresh store, then one INSERT ... SELECT over a
recursive counter. The new rows have random ids and digests; credential, service, scope and
expiry are copied from the token already there, the user id is NULL as for
client_credentials, and creation times go back a millisecond a row. The tokens table's
secondary indexes are dropped for the insert and rebuilt after it (one sort each instead of
millions of random inserts); the unique ones stay, so the copy is what the API would leave.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from edgeauth.crypto import PREFIX_CHARS

FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
INSERT INTO tokens (id, access_digest, prefix, credential_id, service, authenticated_userid,
    scope, family_id, created_at, expires_at)
SELECT lower(hex(randomblob(16))), randomblob(32), substr(lower(hex(randomblob(4))), 1, ?2),
    t.credential_id, t.service, NULL, t.scope, lower(hex(randomblob(16))),
    t.created_at - n.i * 0.001, t.expires_at
FROM n, (SELECT * FROM tokens ORDER BY created_at LIMIT 1) AS t
"""
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
