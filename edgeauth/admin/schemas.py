"""Admin request bodies → checked values, with Kong's per-field messages. Pure.

Rule 1: every problem of a body is reported at once, in Kong's schema-violation shape; array
fields report per position (`redirect_uris: [null, "cannot parse 'x'"]`).
Rule 2: unknown fields are violations, as in Kong, so a typo never silently does nothing.
Rule 3: values that reach backends in identity headers (usernames, custom_ids, client_ids,
user ids, scopes) hold no control characters; usernames and client_ids, which admin paths take
in place of an id, never have the form of one (config/schema.py `identity_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgeauth.config.schema import has_control, identity_problem
from edgeauth.config.schema import is_uuid as is_uuid
from edgeauth.errors import SchemaViolation

Body = Mapping[str, Any]
CLIENT_TYPES = ("confidential", "public")
MAX_SECONDS = 10 * 366 * 86400  # ten years: a bound keeps time arithmetic finite
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
TAG = re.compile(r"[!-~]+")  # printable ASCII without space
_RESERVED_IN_TAGS = (",", "/")
ID_SHAPED = "must not have the form of a UUID (token ids have it)"


class Fields:
    """Collects per-field problems; `done()` raises them all together."""

    def __init__(self, body: Body, known: tuple[str, ...]) -> None:
        self.body = body
        self.problems: dict[str, object] = {}
        for name in body:
            if name not in known:
                self.problems[name] = "unknown field"

    def text(self, name: str, *, required: bool = False, max_len: int = 255) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.problems[name] = "required field missing"
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems[name] = "expected a non-empty string"
            return None
        if len(value) > max_len:
            self.problems[name] = f"length must be at most {max_len}"
            return None
        return value

    def identity(self, name: str, *, key: bool) -> str | None:
        """A text field that names a consumer, client or user (see Rule 3)."""
        value = self.text(name)
        problem = None if value is None else identity_problem(value, key=key)
        if problem is not None:
            self.problems[name] = problem
            return None
        return value

    def tags(self) -> tuple[str, ...] | None:
        """Kong's tag rules: printable ASCII, no space; `,` and `/` are the filter's."""
        values = self.strings("tags")
        if values is None:
            return None
        positions = [
            None
            if TAG.fullmatch(tag) and not any(c in tag for c in _RESERVED_IN_TAGS)
            else "invalid tag: printable ASCII without space, ',' or '/'"
            for tag in values
        ]
        if any(positions):
            self.problems["tags"] = positions
            return None
        return values

    def strings(self, name: str) -> tuple[str, ...] | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]  # form bodies send one value as a plain string
        if not isinstance(value, list):
            self.problems[name] = "expected an array"
            return None
        positions = [None if isinstance(v, str) and v else "expected a string" for v in value]
        if any(positions):
            self.problems[name] = positions
            return None
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.body.get(name)
        if value is None:
            return None
        if value not in choices:
            self.problems[name] = "expected one of: " + ", ".join(choices)
            return None
        return str(value)

    def number(self, name: str, *, minimum: int = 0, maximum: int = MAX_SECONDS) -> int | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            self.problems[name] = f"expected an integer from {minimum} to {maximum}"
            return None
        return value

    def timestamp(self, name: str, now: float) -> int | None:
        """Seconds since the epoch, not after `now`: a lifetime counts from it, so a creation
        time in the future would stretch the lifetime."""
        value = self.number(name, maximum=MAX_TIMESTAMP)
        if value is not None and value > now:
            self.problems[name] = "must not be in the future"
            return None
        return value

    def done(self) -> None:
        if self.problems:
            raise SchemaViolation(self.problems)


def redirect_uri_problem(uri: str) -> str | None:
    """Absolute, with scheme and host, without fragment (RFC 6749 §3.1.2)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"cannot parse '{uri}'"
    if not parts.scheme or not parts.netloc:
        return f"cannot parse '{uri}'"
    if parts.fragment or uri.endswith("#"):
        return "fragment not allowed"
    return None


@dataclass(frozen=True, slots=True)
class ConsumerInput:
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...] | None


ENTITY_RULE = "at least one of these fields must be non-empty: 'custom_id', 'username'"


def needs_identity(username: str | None, custom_id: str | None) -> None:
    """Kong's entity rule for consumers, checked on the merged result of a PATCH too."""
    if username is None and custom_id is None:
        raise SchemaViolation({"@entity": [ENTITY_RULE]})


def consumer(body: Body, *, partial: bool = False) -> ConsumerInput:
    f = Fields(body, ("username", "custom_id", "tags", "id", "created_at", "updated_at", "type"))
    username = f.identity("username", key=True)
    custom_id = f.identity("custom_id", key=False)
    tags = f.tags()
    if not partial and username is None and custom_id is None and not f.problems:
        f.problems["@entity"] = [ENTITY_RULE]
    f.done()
    return ConsumerInput(username, custom_id, tags)


@dataclass(frozen=True, slots=True)
class CredentialInput:
    name: str | None
    client_id: str | None
    client_secret: str | None
    redirect_uris: tuple[str, ...] | None
    client_type: str | None
    tags: tuple[str, ...] | None


CREDENTIAL_FIELDS = (
    "name",
    "client_id",
    "client_secret",
    "redirect_uris",
    "client_type",
    "tags",
    "hash_secret",
    "consumer",
    "id",
    "created_at",
)


def secret_rules(client_type: str, has_secret: bool, sends_secret: bool) -> None:
    """After a change: public clients have no secret, confidential ones one (RFC 6749 §2.1)."""
    if client_type == "public" and sends_secret:
        raise SchemaViolation({"client_secret": "public clients have no secret"})
    if client_type == "confidential" and not (has_secret or sends_secret):
        raise SchemaViolation({"client_secret": "required for a confidential client"})


def credential(body: Body, *, partial: bool = False) -> CredentialInput:
    f = Fields(body, CREDENTIAL_FIELDS)
    name = f.text("name", required=not partial)
    client_id = f.identity("client_id", key=True)
    secret = f.text("client_secret", max_len=1024)
    uris = f.strings("redirect_uris")
    if uris is not None:
        positions = [redirect_uri_problem(uri) for uri in uris]
        if any(positions):
            f.problems["redirect_uris"] = positions
    client_type = f.choice("client_type", CLIENT_TYPES)
    if client_type == "public" and secret is not None:
        f.problems["client_secret"] = "public clients have no secret"  # noqa: S105
    tags = f.tags()
    f.done()
    return CredentialInput(name, client_id, secret, uris, client_type, tags)


@dataclass(frozen=True, slots=True)
class TokenInput:
    access_token: str | None
    refresh_token: str | None
    credential_id: str | None
    service: str | None
    authenticated_userid: str | None
    scope: str | None
    expires_in: int | None
    created_at: int | None
    ttl: int | None  # Kong's row time-to-live: seconds from now


TOKEN_FIELDS = (
    "access_token",
    "refresh_token",
    "credential",
    "service",
    "authenticated_userid",
    "scope",
    "expires_in",
    "token_type",
    "id",
    "created_at",
    "ttl",
)


def _ref(f: Fields, name: str) -> str | None:
    """Kong's foreign keys: `{"id": "..."}` or the plain id."""
    value = f.body.get(name)
    if isinstance(value, dict):
        value = value.get("id") or value.get("name")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        f.problems[name] = 'expected a reference {"id": ...}'
        return None
    return value


def _scope(f: Fields) -> str | None:
    """Any string, empty included (no scope); it reaches backends as X-Authenticated-Scope."""
    scope = f.body.get("scope")
    if scope is None:
        return None
    if not isinstance(scope, str):
        f.problems["scope"] = "expected a string"
        return None
    if has_control(scope):
        f.problems["scope"] = "must not contain control characters"
        return None
    return scope


def token(body: Body, *, now: float, partial: bool = False) -> TokenInput:
    f = Fields(body, TOKEN_FIELDS)
    access = f.text("access_token", max_len=4096)
    if access is not None and is_uuid(access):  # admin paths take a token's id or value
        f.problems["access_token"] = ID_SHAPED
    refresh = f.text("refresh_token", max_len=4096)
    credential_id = _ref(f, "credential")
    if credential_id is None and not partial and "credential" not in f.problems:
        f.problems["credential"] = "required field missing"
    service = _ref(f, "service")
    userid = f.identity("authenticated_userid", key=False)
    scope = _scope(f)
    expires_in = f.number("expires_in")
    created_at = f.timestamp("created_at", now)
    ttl = f.number("ttl", minimum=1)
    f.done()
    return TokenInput(
        access, refresh, credential_id, service, userid, scope, expires_in, created_at, ttl
    )
