"""What was read from Kong, whichever the source (its database or a decK file): plain values.

Times are seconds since the epoch. An id is None only where a decK dump left it out (dumps
without --with-id); the plan then derives a stable one, so that re-running stays idempotent.
Fields a source does not know are None (an older Kong, or a decK file that omits defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

_CLIENTS_ONLY = "edgeauth authenticates clients with OAuth 2.0 applications only"
# Kong entities an import reads nothing of, and why (any other: "no equivalent").
NOT_READ = {
    "keyauth_credentials": _CLIENTS_ONLY,
    "basicauth_credentials": _CLIENTS_ONLY,
    "jwt_secrets": _CLIENTS_ONLY,
    "hmacauth_credentials": _CLIENTS_ONLY,
    "acls": "edgeauth has no ACL groups (use required_scopes)",
    "consumer_groups": "edgeauth has no consumer groups",
    "upstreams": "edgeauth has no load balancing (a service's url is one address)",
    "targets": "edgeauth has no load balancing (a service's url is one address)",
    "certificates": "edgeauth's certificate is [server] tls_cert_file",
    "ca_certificates": "edgeauth trusts a service's ca_file",
}


# Service and route fields edgeauth maps, whatever the source; each source adds the fields of
# its own layout, and reports every other non-empty one as not carried.
MAPPED_SERVICE_FIELDS = frozenset(
    {
        "id",
        "name",
        "protocol",
        "host",
        "port",
        "path",
        "connect_timeout",
        "read_timeout",
        "retries",
        "tls_verify",
        "enabled",
        "tags",
        "created_at",
        "updated_at",
    }
)


def unmapped(fields: Mapping[str, Any], known: AbstractSet[str]) -> dict[str, Any]:
    """The non-empty fields of a Kong entity that edgeauth does not map (reported, not lost)."""
    return {k: v for k, v in fields.items() if k not in known and v not in (None, [], {})}


MAPPED_ROUTE_FIELDS = frozenset(
    {"id", "name", "paths", "hosts", "methods", "strip_path", "tags", "created_at", "updated_at"}
)


def not_read(kind: str, count: int) -> str:
    """The line reporting `count` Kong entities of `kind` that are not carried."""
    return f"{count} {kind}: {NOT_READ.get(kind, 'edgeauth has no equivalent')}"


class SourceError(Exception):
    """The Kong source cannot be read as one (a malformed decK file, a missing workspace)."""


class SourceUnreachable(SourceError):
    """Kong's database does not answer."""


@dataclass(frozen=True, slots=True)
class KongConsumer:
    id: str | None
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...] = ()
    created_at: int | None = None


@dataclass(frozen=True, slots=True)
class KongCredential:
    """An oauth2 credential; `consumer` is its consumer's id, or (decK) id or username."""

    id: str | None
    consumer: str
    name: str
    client_id: str | None
    client_secret: str | None  # clear, or a PHC string when hash_secret
    hash_secret: bool
    redirect_uris: tuple[str, ...] = ()
    client_type: str = "confidential"
    tags: tuple[str, ...] = ()
    created_at: int | None = None


@dataclass(frozen=True, slots=True)
class KongToken:
    """An oauth2_tokens row: the raw tokens as Kong keeps them, read only to be digested."""

    id: str
    credential_id: str
    service_id: str | None  # None: issued under global_credentials
    access_token: str
    refresh_token: str | None
    expires_in: int  # seconds after created_at; 0: never
    created_at: float
    ttl: float | None  # when Kong deletes the row (and its refresh token); None: never
    scope: str | None
    authenticated_userid: str | None


@dataclass(frozen=True, slots=True)
class KongService:
    id: str | None
    name: str | None
    protocol: str
    host: str
    port: int | None
    path: str | None
    connect_timeout_ms: int | None = None
    read_timeout_ms: int | None = None
    retries: int | None = None
    tls_verify: bool | None = None  # None: Kong's default, which does not verify
    enabled: bool = True
    # Set fields edgeauth has no equivalent for, by Kong's name (what the plan reports).
    others: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KongRoute:
    id: str | None
    name: str | None
    service: str | None  # the service's id or (decK) name; None: a route without a service
    paths: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    strip_path: bool = True
    others: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KongPlugin:
    """A plugin instance; unset service, route and consumer mean it applies globally."""

    id: str | None
    name: str
    config: dict[str, Any]
    enabled: bool = True
    service: str | None = None  # id or (decK) name
    route: str | None = None
    consumer: str | None = None


@dataclass(frozen=True, slots=True)
class KongData:
    source: str  # "kong-pg" or "deck", for the summary
    consumers: tuple[KongConsumer, ...] = ()
    credentials: tuple[KongCredential, ...] = ()
    tokens: tuple[KongToken, ...] = ()
    services: tuple[KongService, ...] = ()
    routes: tuple[KongRoute, ...] = ()
    plugins: tuple[KongPlugin, ...] = ()
    upstreams: frozenset[str] = frozenset()  # names of Kong upstreams (load balancers)
    codes: int = 0  # authorization codes seen (never carried)
    # What the source itself left out, with why (other workspaces, entities it cannot read).
    unread: tuple[str, ...] = ()
