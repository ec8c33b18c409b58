"""PKCE (RFC 7636) and the `pkce` policy. Pure.

Rule 1: S256 only; a missing method means S256 (Kong's default), `s256` is accepted, `plain`
is refused: it protects nothing against an attacker who can read the authorization request.
Rule 2: `lax` requires a challenge from public clients, `strict` from every client, `none`
from nobody; a code made with a challenge always needs the verifier, and a verifier for a code
made without one is refused (a downgrade).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from edgeauth.errors import InvalidGrant, InvalidRequest

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def challenge_of(params: dict[str, str], client_is_public: bool, mode: str) -> str | None:
    """The S256 challenge to store with a new code, or None; InvalidRequest when refused."""
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method", "S256")
    if challenge is None:
        if mode == "strict" or (mode == "lax" and client_is_public):
            raise InvalidRequest("code_challenge is required")
        if "code_challenge_method" in params:
            raise InvalidRequest("code_challenge_method without code_challenge")
        return None
    if method.upper() != "S256":
        raise InvalidRequest("code_challenge_method must be S256")
    if not CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters")
    return challenge


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def check_verifier(verifier: str | None, challenge: str | None) -> None:
    """RFC 7636 §4.6, plus the downgrade rule."""
    if challenge is None:
        if verifier is not None:
            raise InvalidGrant("code_verifier was sent for a code issued without PKCE")
        return
    if verifier is None:
        raise InvalidRequest("code_verifier is required for PKCE authorization requests")
    if not VERIFIER.fullmatch(verifier):
        raise InvalidRequest("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
    if not hmac.compare_digest(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
