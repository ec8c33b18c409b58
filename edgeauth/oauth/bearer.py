"""Finding the bearer token of a proxied request (RFC 6750 §2). Pure.

Rule 1: the `auth_header_name` header with scheme `Bearer` or `token` (case-insensitive);
the query's `access_token` only with `accept_token_in_query` (RFC 6750 §2.3 discourages it).
Rule 2: a token in two places, or two such headers, is `invalid_request` (400): the gateway
never guesses which one the client meant.
Rule 3: another scheme (e.g. Basic) is no bearer token at all: "missing", not "invalid".
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from edgeauth.errors import InvalidRequest

_SCHEMES = ("bearer", "token")


def from_header(values: list[str]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("More than one authorization header was sent")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() not in _SCHEMES:
        return None
    token = token.strip()
    return token or None


def split_query_token(raw_query: str) -> tuple[str | None, str]:
    """(the query's access_token, the raw query without it); two of them is invalid_request."""
    if "access" not in raw_query and "%" not in raw_query:
        return None, raw_query  # the common case: nothing that could name access_token
    token: str | None = None
    kept: list[str] = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if unquote_plus(name) == "access_token":
            if token is not None:
                raise InvalidRequest("More than one access_token was sent")
            token = unquote_plus(value)
        else:
            kept.append(part)
    return token or None, "&".join(kept)


def choose(header_token: str | None, query_token: str | None) -> str | None:
    if header_token is not None and query_token is not None:
        raise InvalidRequest("The access token was sent in more than one place")
    return header_token if header_token is not None else query_token
