"""Tokens, digests and client secrets. Pure functions plus one bounded memo.

Rule 1: tokens, codes and generated secrets are 256-bit `secrets.token_urlsafe(32)`; only
their SHA-256 digests are ever stored. Generated client_ids are 128-bit hex (public names).
Rule 2: client secrets are stored as PBKDF2-SHA512 in Kong's PHC format
(`$pbkdf2-sha512$i=10000,l=32$<salt>$<hash>`, unpadded base64), so Kong credentials import as
they are; every comparison of secret material is constant-time.
Rule 3: a verification is slow on purpose (≈15 ms); `SecretMemo` remembers successes keyed by
a digest of client_id, secret and the stored hash, so a changed credential never matches.
Rule 4: a refusal costs the same whoever is asked about: a secret sent for an unknown client is
verified against `DUMMY_HASH` (same parameters as real hashes, matching no known secret).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PBKDF2_ITERATIONS = 10_000
PBKDF2_LENGTH = 32
SALT_BYTES = 16
PREFIX_CHARS = 6


def _bytes(text: str) -> bytes:
    """UTF-8 that never fails: JSON may carry lone surrogates, which must not become a 500."""
    return text.encode("utf-8", "surrogatepass")


def mint() -> str:
    """A fresh 256-bit token, code or secret."""
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    """A generated client_id: 32 hex digits (128 bits), like Kong's. Never starts with "-",
    which a shell command would take for an option (token_urlsafe's do, 1 in 64)."""
    return secrets.token_hex(16)


def digest(token: str) -> bytes:
    """The SHA-256 digest under which a token or code is stored and cached."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def consumer_marker(consumer_id: str) -> bytes:
    """The digest announced on the revocation feed when a consumer changes or goes away, so
    that caches holding something of that consumer besides its tokens (the anonymous
    identity) drop it. No token edgeauth mints has this digest (they are random)."""
    return hashlib.sha256(b"edgeauth consumer changed\x00" + consumer_id.encode()).digest()


def prefix(token: str) -> str:
    """The first few characters of a token: enough for an operator, useless to an attacker."""
    return token[:PREFIX_CHARS]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_secret(
    secret: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """Kong-compatible PHC string for a client secret."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha512", _bytes(secret), salt, iterations, PBKDF2_LENGTH)
    return f"$pbkdf2-sha512$i={iterations},l={PBKDF2_LENGTH}${_b64(salt)}${_b64(derived)}"


# Hashed at start from a secret nobody ever learns: verifying against it is a real PBKDF2 run.
DUMMY_HASH = hash_secret(mint())


def parse_phc(encoded: str) -> tuple[int, int, bytes, bytes] | None:
    """(iterations, length, salt, hash) of a `$pbkdf2-sha512$...` string, or None if malformed."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "pbkdf2-sha512":
        return None
    try:
        params = dict(item.split("=", 1) for item in parts[2].split(","))
        iterations, length = int(params["i"]), int(params["l"])
        salt, expected = _unb64(parts[3]), _unb64(parts[4])
    except (ValueError, KeyError, binascii.Error):
        return None
    if not (1 <= iterations <= 10_000_000 and length == len(expected) and length > 0):
        return None
    return iterations, length, salt, expected


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether `secret` matches the stored PHC string (constant-time comparison)."""
    parsed = parse_phc(encoded)
    if parsed is None:
        return False
    iterations, length, salt, expected = parsed
    derived = hashlib.pbkdf2_hmac("sha512", _bytes(secret), salt, iterations, length)
    return hmac.compare_digest(derived, expected)


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets (provision keys, admin tokens)."""
    return hmac.compare_digest(_bytes(a), _bytes(b))


class SecretMemo:
    """Bounded memory of successful secret verifications (insertion-ordered eviction)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._seen: dict[bytes, None] = {}

    @staticmethod
    def key(client_id: str, secret: str, encoded: str) -> bytes:
        material = "\x00".join((client_id, secret, encoded)).encode("utf-8", "surrogatepass")
        return hashlib.sha256(material).digest()

    def __contains__(self, key: bytes) -> bool:
        return key in self._seen

    def add(self, key: bytes) -> None:
        if len(self._seen) >= self._max:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = None

    def clear(self) -> None:
        self._seen.clear()
