"""Console sessions, CSRF tokens and the secret marks of rotate forms: signed, so any worker
can check them without shared state. Pure.

Rule 1: a session is `<expiry>.<nonce>.<mac>`, the mac an HMAC-SHA256 over expiry and nonce
with a key derived from the admin token: rotating the token signs every session out, and
nothing about a session is stored anywhere. Signing out clears the browser's cookie; a copy of
it taken before stays valid until its expiry (keep `ui_session_seconds` short).
Rule 2: a form's CSRF token is an HMAC of the session's nonce under a key of its own: it is
worth nothing without the session cookie, and a session's token never signs another's forms.
Rule 3: every comparison of a mac is constant-time; a malformed value is simply not valid.
Rule 4: the signed expiry ends a session, not the cookie's Max-Age, which outlives it by
COOKIE_MARGIN (see `cookie_max_age`).
Rule 5: a rotate form carries a mark of the secret it replaces, an HMAC of the stored hash under
a key of its own (never the hash, which is worth an offline guess): posted again after the
secret changed, it no longer matches, so a reload cannot rotate a secret just shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from edgeauth import crypto

COOKIE = "edgeauth_console"
_SESSION_LABEL = b"edgeauth console session v1"
_CSRF_LABEL = b"edgeauth console csrf v1"
_SECRET_LABEL = b"edgeauth console secret mark v1"
_NONCE_BYTES = 16
_MAX_PART = 64  # no valid part is longer: a bigger cookie is refused before any hashing
COOKIE_MARGIN = 3600  # seconds the cookie outlives its session (Rule 4)


class State(Enum):
    MISSING = "missing"
    EXPIRED = "expired"  # well-formed and signed, but past its expiry
    INVALID = "invalid"  # not ours: malformed, or signed under another admin token
    VALID = "valid"


@dataclass(frozen=True, slots=True)
class Session:
    state: State
    nonce: str = ""
    expires_at: int = 0


def _key(admin_token: str, label: bytes) -> bytes:
    return hmac.new(admin_token.encode("utf-8", "surrogatepass"), label, hashlib.sha256).digest()


def _mac(key: bytes, message: str) -> str:
    raw = hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def issue(admin_token: str, now: float, lifetime: int) -> str:
    """A new session's cookie value, valid for `lifetime` seconds from `now`."""
    expiry = int(now) + lifetime
    nonce = secrets.token_urlsafe(_NONCE_BYTES)
    signed = f"{expiry}.{nonce}"
    return f"{signed}.{_mac(_key(admin_token, _SESSION_LABEL), signed)}"


def cookie_max_age(lifetime: int) -> int:
    """The cookie's Max-Age: the session's lifetime and COOKIE_MARGIN (Rule 4). A browser
    drops a cookie at its Max-Age; were that the signed expiry, a page asked for after it
    would come without a cookie, and the console could not tell an expired session (worth
    "Your session has expired") from none. The margin only keeps the browser sending a
    cookie the console refuses: the expiry inside is still checked on every request."""
    return lifetime + COOKIE_MARGIN


def read(value: str | None, admin_token: str, now: float) -> Session:
    """What a cookie value is (Rule 1, Rule 3): the signature is checked before the expiry,
    so only a session this console issued is ever called expired."""
    if not value:
        return Session(State.MISSING)
    parts = value.split(".")
    if len(parts) != 3 or any(not p or len(p) > _MAX_PART or not p.isascii() for p in parts):
        return Session(State.INVALID)
    expiry, nonce, mac = parts
    expected = _mac(_key(admin_token, _SESSION_LABEL), f"{expiry}.{nonce}")
    if not hmac.compare_digest(mac, expected) or not expiry.isdigit():
        return Session(State.INVALID)
    if int(expiry) <= now:
        return Session(State.EXPIRED, nonce, int(expiry))
    return Session(State.VALID, nonce, int(expiry))


def csrf_token(admin_token: str, session: Session) -> str:
    """The hidden `csrf` field of every form that writes, for this session (Rule 2)."""
    return _mac(_key(admin_token, _CSRF_LABEL), session.nonce)


def csrf_valid(given: str | None, admin_token: str, session: Session) -> bool:
    if given is None or session.state is not State.VALID or not given.isascii():
        return False
    return crypto.same(given, csrf_token(admin_token, session))


def secret_mark(admin_token: str, credential_id: str, secret_hash: str | None) -> str:
    """The mark of an application's current secret its rotate form carries (Rule 5); an
    application without a secret has a mark too, so every form carries one."""
    return _mac(_key(admin_token, _SECRET_LABEL), f"{credential_id}.{secret_hash or ''}")


def secret_unchanged(
    given: str | None, admin_token: str, credential_id: str, secret_hash: str | None
) -> bool:
    """Whether a posted mark is that of the application's current secret (Rule 3, 5)."""
    if not given or not given.isascii():
        return False
    return crypto.same(given, secret_mark(admin_token, credential_id, secret_hash))
