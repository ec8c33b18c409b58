"""Finding the bearer token of a proxied request (RFC 6750 §2). Pure.

Rule 1: the `auth_header_name` header with scheme `Bearer` or `token` (case-insensitive);
the query's `access_token` only with `accept_token_in_query` (RFC 6750 §2.3 discourages it);
the form body's `access_token` only with `accept_token_in_body`, and only where RFC 6750 §2.2
allows it: a POST, PUT or PATCH whose one Content-Type is application/x-www-form-urlencoded.
Rule 2: a token in two places, or two such headers, is `invalid_request` (400): the gateway
never guesses which one the client meant.
Rule 3: another scheme (e.g. Basic) is no bearer token at all: "missing", not "invalid".
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote_plus, unquote_to_bytes

from edgeauth.errors import InvalidRequest

_SCHEMES = ("bearer", "token")
_FORM = "application/x-www-form-urlencoded"
_FORM_METHODS = frozenset({"POST", "PUT", "PATCH"})


def from_header(values: Sequence[str]) -> str | None:
    """The token of the auth header's values (all of them, to refuse two)."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("More than one authorization header was sent")
    value = values[0]
    if value.startswith("Bearer "):  # the usual spelling: what the rule below gives, cheaper
        return value[7:].strip() or None
    scheme, _, token = value.strip().partition(" ")
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


def is_form(method: str, content_types: list[str]) -> bool:
    """Whether the body may carry the token (rule 1); two Content-Types is no form: the
    backend may read the other one."""
    if method not in _FORM_METHODS or len(content_types) != 1:
        return False
    return content_types[0].partition(";")[0].strip().lower() == _FORM


def _form_unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def split_form_token(body: bytes) -> tuple[str | None, bytes]:
    """(the form's access_token, the body without that pair and its `&`, every other byte
    as sent); two of them is invalid_request."""
    if b"access" not in body and b"%" not in body:
        return None, body  # nothing that could name access_token
    token: str | None = None
    kept: list[bytes] = []
    for part in body.split(b"&"):
        name, _, value = part.partition(b"=")
        if _form_unquote(name) == b"access_token":
            if token is not None:
                raise InvalidRequest("More than one access_token was sent")
            token = _form_unquote(value).decode("utf-8", "replace")
        else:
            kept.append(part)
    return token or None, b"&".join(kept)


def choose(token: str | None, other: str | None) -> str | None:
    """The one token of two places (header and query, then that and the body), if any."""
    if token is not None and other is not None:
        raise InvalidRequest("The access token was sent in more than one place")
    return token if token is not None else other
