"""The in-memory token cache of one worker: validated tokens, and recently unknown ones.

Rule 1: a hit is one dict lookup and one float comparison: no I/O, no allocation. Entries
are tuples of atomic values (and tuples of them), which CPython's GC stops tracking, so a
large cache adds nothing to collection pauses (perf-notes: an OrderedDict of 100k costs ms).
Rule 2: both maps are bounded; the positive one evicts its oldest insertion (a hit moves an
entry to the back, so hot tokens stay), the negative one expires after `negative_ttl`.
Rule 3: an entry never outlives its token: expiry is checked on every hit.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Final

Header = tuple[str, str]

# What a validated token lets through, precomputed once per token. A plain tuple on purpose:
# exact tuples of atomic values are untracked by the GC, NamedTuple instances are not.
#   (expires_at: float, math.inf if never; service: str | None, None for a global token;
#    scopes; identity headers for upstream; consumer name for the log; client_id)
Entry = tuple[float, str | None, tuple[str, ...], tuple[Header, ...], str, str]
EXPIRES_AT: Final = 0
SERVICE: Final = 1
SCOPES: Final = 2
IDENTITY: Final = 3
CONSUMER: Final = 4
CLIENT_ID: Final = 5


class TokenCache:
    def __init__(self, max_entries: int, negative_ttl: float, max_negative: int = 10_000) -> None:
        self._max = max_entries
        self._entries: dict[bytes, Entry] = {}
        self._negative_ttl = negative_ttl
        self._max_negative = max_negative
        self._unknown: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float) -> Entry | None:
        """The live entry for a digest, or None (expired entries are dropped here)."""
        entries = self._entries
        entry = entries.pop(digest, None)
        if entry is None:
            return None
        if entry[EXPIRES_AT] <= now:
            return None
        entries[digest] = entry  # back of the line: recently used
        return entry

    def put(self, digest: bytes, entry: Entry) -> None:
        entries = self._entries
        if digest not in entries and len(entries) >= self._max:
            del entries[next(iter(entries))]
        entries[digest] = entry
        self._unknown.pop(digest, None)

    def is_unknown(self, digest: bytes, now: float) -> bool:
        """Whether this digest was found dead or missing less than its negative lifetime ago
        (`negative_ttl`, plus up to a quarter of it)."""
        until = self._unknown.get(digest)
        if until is None:
            return False
        if until <= now:
            del self._unknown[digest]
            return False
        return True

    def put_unknown(self, digest: bytes, now: float) -> None:
        if self._negative_ttl <= 0:
            return
        unknown = self._unknown
        if digest not in unknown and len(unknown) >= self._max_negative:
            del unknown[next(iter(unknown))]
        # Between one and 1.25 TTLs: a flood's entries, made together, must not all expire
        # together and send one burst of reads to the store.
        unknown[digest] = now + self._negative_ttl * (1.0 + 0.25 * random.random())  # noqa: S311

    def evict(self, digests: Iterable[bytes]) -> None:
        """Forget revoked tokens at once (they will be read, and refused, from the store)."""
        for digest in digests:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        self._entries.clear()
        self._unknown.clear()
