"""Admin authentication: the admin token, compared in constant time. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from edgeauth import crypto


def presented(headers: Mapping[str, str]) -> str | None:
    """The token from `Kong-Admin-Token`, or from `Authorization: Bearer` (scheme any case)."""
    kong = headers.get("Kong-Admin-Token")
    if kong is not None:
        return kong
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authorized(headers: Mapping[str, str], expected: str) -> bool:
    token = presented(headers)
    return token is not None and crypto.same(token, expected)
