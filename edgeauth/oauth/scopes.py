"""Scope rules (RFC 6749 §3.3, Kong's `scopes` / `mandatory_scope`). Pure.

Rule 1: a requested scope must be among the service's `scopes`; an empty `scope` parameter
counts as none requested.
Rule 2: with `mandatory_scope`, none requested is `invalid_scope`; without it, none is granted.
Rule 3: on refresh a scope may only narrow (RFC 6749 §6).
"""

from __future__ import annotations

from edgeauth.errors import InvalidScope


def parse(scope: str | None) -> tuple[str, ...]:
    """Space-separated scope tokens, deduplicated, in request order."""
    if not scope:
        return ()
    return tuple(dict.fromkeys(scope.split()))


def grant(requested: str | None, allowed: tuple[str, ...], mandatory: bool) -> tuple[str, ...]:
    """The scope to grant for a new token."""
    wanted = parse(requested)
    if not wanted:
        if mandatory:
            raise InvalidScope("You must specify a scope")
        return ()
    if any(item not in allowed for item in wanted):
        raise InvalidScope("The requested scope is invalid or unknown")
    return wanted


def narrow(requested: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """The scope of a refreshed token: the original, or a subset of it."""
    wanted = parse(requested)
    if not wanted:
        return granted
    if any(item not in granted for item in wanted):
        raise InvalidScope("The requested scope exceeds the scope originally granted")
    return wanted


def join(scopes: tuple[str, ...]) -> str:
    return " ".join(scopes)
