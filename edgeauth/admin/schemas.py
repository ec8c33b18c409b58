"""Admin request bodies → checked values, with Kong's per-field messages. Pure.

Rule 1: every problem of a body is reported at once, in Kong's schema-violation shape; array
fields report per position (`redirect_uris: [null, "cannot parse 'x'"]`).
Rule 2: unknown fields are violations, as in Kong, so a typo never silently does nothing.
Rule 3: values that reach backends in identity headers (usernames, custom_ids, client_ids,
user ids, scopes) hold no control characters; usernames and client_ids, which admin paths take
in place of an id, never have the form of one (config/schema.py `identity_problem`).
Rule 4: Kong's `id` and `created_at` are kept on create (a migration keeps its references); on
a change they may repeat the entity's own values, never change them.
Rule 5: the tag of config-managed entities (models.MANAGED_TAG) is config.toml's to set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgeauth import crypto
from edgeauth.config.schema import has_control, identity_problem
from edgeauth.config.schema import is_uuid as is_uuid
from edgeauth.errors import SchemaViolation
from edgeauth.models import MANAGED_TAG, Consumer, Credential

Body = Mapping[str, Any]
CLIENT_TYPES = ("confidential", "public")
MAX_SECONDS = 10 * 366 * 86400  # ten years: a bound keeps time arithmetic finite
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
TAG = re.compile(r"[!-~]+")  # printable ASCII without space
_RESERVED_IN_TAGS = (",", "/")
ID_SHAPED = "must not have the form of a UUID (token ids have it)"
MANAGED = f"'{MANAGED_TAG}' is set by config.toml only"
PHC_SECRET = re.compile(r"\$pbkdf2-[a-z0-9]+\$")
HASH_AS_TEXT = "is a PBKDF2 hash: send it as client_secret_hash"
ONE_OF_TWO = "give client_secret or client_secret_hash, not both"
CONFIDENTIAL_NEEDS_ONE = "required for a confidential client"
PHC_FORMAT = "expected a PBKDF2-SHA512 hash in Kong's format: $pbkdf2-sha512$i=N,l=N$salt$hash"


class Fields:
    """Collects per-field problems; `done()` raises them all together. `found` holds problems
    found before the body was read (references that do not exist), reported with the rest."""

    def __init__(
        self,
        body: Body,
        known: tuple[str, ...],
        found: Mapping[str, object] | None = None,
    ) -> None:
        self.body = body
        self.problems: dict[str, object] = {
            name: "unknown field" for name in body if name not in known
        }
        self.problems.update(found or {})

    def text(self, name: str, *, required: bool = False, max_len: int = 255) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.require(name, None)
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems[name] = "expected a non-empty string"
            return None
        if len(value) > max_len:
            self.problems[name] = f"length must be at most {max_len}"
            return None
        return value

    def require(self, name: str, value: object) -> None:
        if value is None and name not in self.problems:
            self.problems[name] = "required field missing"

    def identity(self, name: str, *, key: bool) -> str | None:
        """A text field that names a consumer, client or user (see Rule 3)."""
        value = self.text(name)
        problem = None if value is None else identity_problem(value, key=key)
        if problem is not None:
            self.problems[name] = problem
            return None
        return value

    def uuid(self, name: str) -> str | None:
        """An entity id: a UUID, kept in Kong's lower case."""
        value = self.text(name, max_len=36)
        if value is not None and not is_uuid(value):
            self.problems[name] = "expected a UUID"
            return None
        return None if value is None else value.lower()

    def tags(self) -> tuple[str, ...] | None:
        """Kong's tag rules: printable ASCII, no space; `,` and `/` are the filter's."""
        values = self.strings("tags")
        if values is None:
            return None
        positions = [_tag_problem(tag) for tag in values]
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

    def origin(
        self, now: float, current: Consumer | Credential | None
    ) -> tuple[str | None, int | None]:
        """`id` and `created_at` (Rule 4)."""
        entity_id = self.uuid("id")
        created_at = self.timestamp("created_at", now)
        if current is not None:
            if entity_id not in (None, current.id):
                self.problems["id"] = "cannot be changed"
            if created_at not in (None, current.created_at):
                self.problems["created_at"] = "cannot be changed"
        return entity_id, created_at

    def done(self) -> None:
        if self.problems:
            raise SchemaViolation(self.problems)


def _tag_problem(tag: str) -> str | None:
    if not TAG.fullmatch(tag) or any(c in tag for c in _RESERVED_IN_TAGS):
        return "invalid tag: printable ASCII without space, ',' or '/'"
    return MANAGED if tag == MANAGED_TAG else None


def redirect_uri_problem(uri: str) -> str | None:
    """Absolute, with scheme and host, without fragment (RFC 6749 §3.1.2)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"cannot parse '{uri}'"
    if not parts.scheme or not parts.netloc:
        return f"cannot parse '{uri}'"
    if parts.fragment or uri.endswith("#"):
        return f"fragment not allowed in '{uri}'"
    return None


def from_path(body: Body, key: str, name: str) -> dict[str, Any]:
    """A PUT body with what its path names: an id (the path's wins, as in Kong's upsert), else
    the `name` field (username, client_id) unless the body gives one."""
    merged = dict(body)
    if is_uuid(key):
        merged["id"] = key.lower()
    else:
        merged.setdefault(name, key)
    return merged


@dataclass(frozen=True, slots=True)
class ConsumerInput:
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...] | None
    id: str | None
    created_at: int | None


ENTITY_RULE = "at least one of these fields must be non-empty: 'custom_id', 'username'"
CONSUMER_FIELDS = ("username", "custom_id", "tags", "id", "created_at", "updated_at", "type")


def _as_held(body: Body, name: str, patched: Consumer | None) -> object:
    """A field as the consumer will hold it: a PATCH keeps what its body omits."""
    return getattr(patched, name) if patched and name not in body else body.get(name)


def consumer(
    body: Body, *, now: float, current: Consumer | None = None, partial: bool = False
) -> ConsumerInput:
    """A create, or with `current` a full replace (PUT), or with `partial` a PATCH."""
    f = Fields(body, CONSUMER_FIELDS)
    username = f.identity("username", key=True)
    custom_id = f.identity("custom_id", key=False)
    tags = f.tags()
    entity_id, created_at = f.origin(now, current)
    patched = current if partial else None
    if all(_as_held(body, name, patched) is None for name in ("username", "custom_id")):
        f.problems["@entity"] = [ENTITY_RULE]
    f.done()
    return ConsumerInput(username, custom_id, tags, entity_id, created_at)


@dataclass(frozen=True, slots=True)
class CredentialInput:
    name: str | None
    client_id: str | None
    client_secret: str | None
    client_secret_hash: str | None  # Kong's PHC string, stored as it is
    redirect_uris: tuple[str, ...] | None
    client_type: str | None
    tags: tuple[str, ...] | None
    id: str | None
    created_at: int | None


CREDENTIAL_FIELDS = (
    "name",
    "client_id",
    "client_secret",
    "client_secret_hash",
    "redirect_uris",
    "client_type",
    "tags",
    "hash_secret",
    "consumer",
    "id",
    "created_at",
)


def _secret(f: Fields) -> str | None:
    """A clear secret; a hash sent as one would be hashed again and never match."""
    secret = f.text("client_secret", max_len=1024)
    if secret is not None and PHC_SECRET.match(secret):
        f.problems["client_secret"] = HASH_AS_TEXT
        return None
    return secret


def _secret_hash(f: Fields) -> str | None:
    encoded = f.text("client_secret_hash", max_len=1024)
    if encoded is not None and crypto.parse_phc(encoded) is None:
        f.problems["client_secret_hash"] = PHC_FORMAT
        return None
    return encoded


def _redirect_uris(f: Fields) -> tuple[str, ...] | None:
    uris = f.strings("redirect_uris")
    if uris is None:
        return None
    positions = [redirect_uri_problem(uri) for uri in uris]
    if any(positions):
        f.problems["redirect_uris"] = positions
        return None
    return uris


def _secret_rules(f: Fields, client_type: str | None, patched: Credential | None) -> None:
    """On the application as it will be (`patched`: by a PATCH): public clients have no
    secret, confidential ones one (RFC 6749 §2.1); a create or replace without one gets one."""
    sent = [n for n in ("client_secret", "client_secret_hash") if f.body.get(n) is not None]
    if len(sent) == 2:
        f.problems["client_secret_hash"] = ONE_OF_TWO
    kind = client_type or (patched.client_type.value if patched else "confidential")
    if kind == "public":
        for name in sent:
            f.problems[name] = "public clients have no secret"
    elif patched is not None and not sent and patched.secret_hash is None:
        f.problems["client_secret"] = CONFIDENTIAL_NEEDS_ONE


def credential(
    body: Body, *, now: float, current: Credential | None = None, partial: bool = False
) -> CredentialInput:
    """A create, or with `current` a full replace (PUT), or with `partial` a PATCH."""
    f = Fields(body, CREDENTIAL_FIELDS)
    name = f.text("name", required=not partial)
    client_id = f.identity("client_id", key=True)
    secret, secret_hash = _secret(f), _secret_hash(f)
    uris = _redirect_uris(f)
    client_type = f.choice("client_type", CLIENT_TYPES)
    tags = f.tags()
    entity_id, created_at = f.origin(now, current)
    _secret_rules(f, client_type, current if partial else None)
    f.done()
    return CredentialInput(
        name, client_id, secret, secret_hash, uris, client_type, tags, entity_id, created_at
    )


@dataclass(frozen=True, slots=True)
class TokenInput:
    access_token: str | None
    refresh_token: str | None
    credential_id: str | None
    service: str | None
    authenticated_userid: str | None
    scope: str | None
    expires_in: int | None
    id: str | None
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
PATCHABLE = ("expires_in", "scope")


def reference(value: object) -> str | None:
    """The key in Kong's foreign key `{"id": ...}` (or a plain id or name); None if none."""
    if isinstance(value, dict):
        value = value.get("id") or value.get("name")
    return value if isinstance(value, str) and value else None


def _ref(f: Fields, name: str) -> str | None:
    key = reference(f.body.get(name))
    if key is None and f.body.get(name) is not None:
        f.problems[name] = 'expected a reference {"id": ...}'
    return key


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


def _alive(f: Fields, created_at: int | None, expires_in: int | None, now: float) -> None:
    """A token already expired is refused rather than brought back as a dead row."""
    if created_at is not None and expires_in and created_at + expires_in <= now:
        end = created_at + expires_in
        f.problems["expires_in"] = f"the token expired at {end} (created_at + expires_in)"


def token(
    body: Body,
    *,
    now: float,
    partial: bool = False,
    found: Mapping[str, object] | None = None,
) -> TokenInput:
    """A new token (Kong's schema: `credential` and `expires_in` required), or with `partial`
    a change of a stored one; `found`: the references' problems, reported with the rest."""
    f = Fields(body, TOKEN_FIELDS, found)
    access = f.text("access_token", max_len=4096)
    if access is not None and is_uuid(access):  # admin paths take a token's id or value
        f.problems["access_token"] = ID_SHAPED
    given = TokenInput(
        access_token=access,
        refresh_token=f.text("refresh_token", max_len=4096),
        credential_id=_ref(f, "credential"),
        service=_ref(f, "service"),
        authenticated_userid=f.identity("authenticated_userid", key=False),
        scope=_scope(f),
        expires_in=f.number("expires_in"),
        id=f.uuid("id"),
        created_at=f.timestamp("created_at", now),
        ttl=f.number("ttl", minimum=1),
    )
    f.choice("token_type", ("bearer",))
    if not partial:
        f.require("credential", given.credential_id)
        f.require("expires_in", given.expires_in)
        _alive(f, given.created_at, given.expires_in, now)
    f.done()
    return given


def token_patch(body: Body, *, now: float) -> TokenInput:
    """PATCH changes a token's expiry and scope, nothing else."""
    fixed = {name: "cannot be changed" for name in body if name not in PATCHABLE}
    return token(body, now=now, partial=True, found=fixed)
