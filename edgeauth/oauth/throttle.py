"""Failed client authentications, throttled per client_id and per source address. Pure.

PBKDF2 is slow on purpose, so a gateway that verifies every guess hands an attacker both a
secret-guessing oracle and a CPU sink. The caller passes the time; nothing here blocks.

Rule 1: a key (one client_id, one source address) may fail `limit` times in a burst, then once
every `window / limit` seconds: at most `limit` failures per `window` on average. Each key
costs one float (the time its failures are paid off), whatever the limit.
Rule 2: a throttled key is refused before any store lookup or PBKDF2 run. Refusals are not
counted (they cost nothing). A PBKDF2 run is counted as a failure before it starts, so that
concurrent guesses are throttled too, and given back if it succeeds; a success does not reset
the count otherwise: anyone holding one valid credential could interleave successes and guess
other clients' secrets freely.
Rule 3: at most `max_keys` keys are remembered per throttle; the least recently failed one is
forgotten first, so rotating client_ids or addresses cannot grow memory. Long client_ids are
kept as a digest.
Rule 4: IPv6 sources count per /64 (what one host usually holds), IPv4 per address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable

MAX_KEYS = 10_000
MAX_KEY_CHARS = 64
IPV6_PREFIX = 64
_SLACK = 1e-6  # seconds: float rounding must not throttle the limit-th failure

Key = tuple[str, str]  # (kind, value): ("client_id", "app") or ("address", "192.0.2.7")


def source_key(address: str) -> str:
    """The address as counted: IPv6 by its /64, IPv4 (also IPv4-mapped) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_KEY_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def keys_of(client_id: str, address: str) -> tuple[Key, Key]:
    """The keys one authentication attempt counts against."""
    if len(client_id) > MAX_KEY_CHARS:
        client_id = (
            "sha256:" + hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()
        )
    return ("client_id", client_id), ("address", source_key(address))


class Throttle:
    """Failures per key as a generic cell rate: `_due[key]` is when its failures are paid off."""

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit  # 0 = off
        self.window = window
        self._interval = window / limit if limit else 0.0
        self._burst = window - self._interval  # a key is throttled while it owes more than this
        self._max_keys = max_keys
        self._due: OrderedDict[Key, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._due)

    def _owed(self, key: Key, now: float) -> float:
        """Seconds until `key` may fail again; <= 0 when it may now."""
        due = self._due.get(key)
        return -1.0 if due is None else due - now - self._burst

    def retry_after(self, keys: Iterable[Key], now: float) -> int | None:
        """Whole seconds until every key may fail again, or None if none is throttled."""
        if not self.limit:
            return None
        owed = max((self._owed(key, now) for key in keys), default=-1.0)
        return math.ceil(owed) if owed > _SLACK else None

    def failed(self, keys: Iterable[Key], now: float) -> list[Key]:
        """Count one failure against each key; returns the keys this failure throttled."""
        if not self.limit:
            return []
        newly: list[Key] = []
        for key in keys:
            was_throttled = self._owed(key, now) > _SLACK
            due = max(self._due.pop(key, now), now) + self._interval
            self._due[key] = due  # now the most recently failed key
            if not was_throttled and self._owed(key, now) > _SLACK:
                newly.append(key)
        while len(self._due) > self._max_keys:
            self._due.popitem(last=False)
        return newly

    def forgive(self, keys: Iterable[Key]) -> None:
        """Give back one failure counted in advance (a verification that succeeded)."""
        for key in keys:
            due = self._due.get(key)
            if due is not None:
                self._due[key] = due - self._interval
