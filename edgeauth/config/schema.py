"""The config schema: config.toml's tables as frozen, slotted dataclasses, with their field marks.

Invariants: each field's type hint is all the walker needs (see walker.py); limits and special
handling are declared next to the field as Mark or Range inside Annotated[...]; defaults are raw
values that the walker converts like written ones. Pure: no I/O, imports only the standard library.
"""

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal


class Bad(Exception):
    """One value is unusable; the walker turns it into a problem line at that value's key path."""


class Mark(enum.Enum):
    """Field annotations the walker acts on, declared next to the field they govern."""

    NON_EMPTY = "non-empty"  # a string or array that must have content
    AUTO_CPU = "auto"  # the string "auto" stands for os.cpu_count()
    FROM_FILE = "from-file"  # a sibling key "<name>_file" may name a file holding the value
    EXISTS = "exists"  # a file edgeauth only reads (certificate, CA bundle): checked at startup
    STATE = "state"  # a file edgeauth writes: relative to $STATE_DIRECTORY when systemd sets it
    LOWER = "lower"
    UPPER = "upper"
    IDENTITY = "identity"  # reaches backends in an identity header: see identity_problem
    IDENTITY_KEY = "identity-key"  # an IDENTITY that admin paths also take in place of an id


# Usernames, custom_ids, client_ids and user ids reach backends in request headers; usernames
# and client_ids also share the admin API's paths with entity ids, which are tried first.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: C0, DEL and C1
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def has_control(text: str) -> bool:
    """Control characters would reach backends raw in an identity header (CR or LF: the
    header could not be sent at all, and every request with that identity would fail)."""
    return _CONTROL.search(text) is not None


def identity_problem(text: str, *, key: bool) -> str | None:
    """Why `text` cannot name a consumer, client or user. A `key` (username, client_id) is
    also what admin paths accept in place of an id: shaped like one, it could name (and hand
    a lookup to) another entity."""
    if has_control(text):
        return "must not contain control characters"
    if key and is_uuid(text):
        return "must not have the form of a UUID (the admin API would read it as an id)"
    return None


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive numeric limits of a field; `above` makes the lower limit exclusive."""

    low: float
    high: float | None = None
    above: bool = False

    def check(self, value: float) -> None:
        if self.above and value <= self.low:
            raise Bad(f"must be greater than {self.low}, got {value}")
        if self.high is not None and not self.low <= value <= self.high:
            raise Bad(f"must be between {self.low} and {self.high}, got {value}")
        if value < self.low:
            raise Bad(f"must be at least {self.low}, got {value}")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Headers some backends and frameworks read as "the real URL or method": never passed on by default.
DROPPED_REQUEST_HEADERS = (
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
)
_Name = Annotated[str, Mark.NON_EMPTY]
_Key = Annotated[str, Mark.NON_EMPTY, Mark.IDENTITY_KEY]
_Seconds = Annotated[float, Range(0, above=True)]
_Count = Annotated[int, Range(1)]
_Unsigned = Annotated[int, Range(0)]


@dataclass(frozen=True, slots=True)
class Address:
    """A listen address; `host` carries no IPv6 brackets, and port 0 means "any free port"."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    listen: Annotated[tuple[Address, ...], Mark.NON_EMPTY] = (Address("0.0.0.0", 8443),)  # noqa: S104 (design §2 default)
    http_listen: tuple[Address, ...] = ()
    workers: Annotated[int, Range(1, 256), Mark.AUTO_CPU] = 1
    tls_cert_file: Annotated[Path, Mark.EXISTS] = Path("certs/edgeauth.crt")
    tls_key_file: Annotated[Path, Mark.EXISTS] = Path("certs/edgeauth.key")
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    trusted_proxies: tuple[Network, ...] = ()
    handshake_timeout_seconds: _Seconds = 10.0
    header_timeout_seconds: _Seconds = 10.0
    body_timeout_seconds: _Seconds = 60.0
    request_timeout_seconds: _Seconds = 300.0
    keepalive_timeout_seconds: _Seconds = 60.0
    max_connections: _Count = 10_000
    max_inflight_requests: _Count = 1024
    drain_seconds: Annotated[float, Range(0)] = 30.0
    request_id_header: _Name = "X-Request-ID"
    max_request_line_bytes: _Count = 8192
    max_header_count: _Count = 100
    max_header_bytes: _Count = 32768
    public_url: str = ""  # the issuer's origin; "" = derived from the first listen address
    drop_request_headers: tuple[Annotated[str, Mark.LOWER], ...] = DROPPED_REQUEST_HEADERS


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminSettings:
    listen: Address = Address("127.0.0.1", 8001)
    token_file: Annotated[Path, Mark.STATE] = Path("var/admin.token")
    ui: bool = False  # the admin console at /ui/ on this listener
    ui_session_seconds: Annotated[int, Range(1, 7 * 86400)] = 28800  # a console sign-in lasts
    allow_remote: bool = False
    # POST /config rewrites config.toml: with it the admin token is write access to the
    # config file (its store, upstreams, file paths). Off unless a pipeline needs it.
    allow_config_post: bool = False
    tls_cert_file: Annotated[Path | None, Mark.EXISTS] = None
    tls_key_file: Annotated[Path | None, Mark.EXISTS] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: Annotated[Path, Mark.STATE] = Path("var/edgeauth.db")
    dsn: Annotated[str, Mark.FROM_FILE] = ""
    pool_size: _Count = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    max_tokens: _Count = 100_000
    negative_ttl_seconds: Annotated[float, Range(0, 60)] = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: str = "stdout"  # "stdout" | "off" | an absolute file path once parsed
    # admin writes and refused admin authentications: "stderr" (beside the process log),
    # "off", or a file path (absolute once parsed)
    audit_log: str = "stderr"


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSettings:
    """The unauthenticated health listener for load balancers; `listen = ""` turns it off."""

    listen: tuple[Address, ...] = (Address("127.0.0.1", 8100),)
    metrics: bool = False  # also serve /metrics there (no token)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    enabled: bool = True
    per_consumer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSettings:
    name: _Name
    paths: Annotated[tuple[str, ...], Mark.NON_EMPTY]
    hosts: tuple[Annotated[str, Mark.LOWER], ...] = ()
    methods: tuple[Annotated[str, Mark.UPPER], ...] = ()
    strip_path: bool = True
    required_scopes: tuple[str, ...] = ()
    allow_path_params: bool = False  # `;` / `%3B` path parameters; refused (400) otherwise
    case_insensitive: bool = False  # the prefix matches in any ASCII case


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuth2Settings:
    scopes: tuple[str, ...] = ()
    mandatory_scope: bool = False
    provision_key: str | None = None
    provision_key_file: Annotated[Path | None, Mark.STATE] = None
    token_expiration: _Unsigned = 7200
    refresh_token_ttl: _Unsigned = 1_209_600
    enable_authorization_code: bool = False
    enable_client_credentials: bool = False
    enable_password_grant: bool = False
    enable_implicit_grant: bool = False
    pkce: Literal["none", "lax", "strict"] = "lax"
    reuse_refresh_token: bool = False
    hide_credentials: bool = True
    accept_http_if_already_terminated: bool = False
    accept_token_in_query: bool = False
    accept_token_in_body: bool = False
    anonymous: str = ""
    global_credentials: bool = False
    auth_header_name: Annotated[str, Mark.NON_EMPTY, Mark.LOWER] = "authorization"
    realm: str = "edgeauth"
    max_failed_client_auth: _Unsigned = 10  # per client_id and per source address; 0 = off
    failed_client_auth_window_seconds: Annotated[float, Range(1, 86400)] = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    name: _Name
    url: _Name
    connect_timeout_seconds: _Seconds = 5.0
    read_timeout_seconds: _Seconds = 60.0
    pool_timeout_seconds: _Seconds = 5.0
    max_connections: _Count = 100
    max_request_body_bytes: _Unsigned = 10_485_760
    retries: Annotated[int, Range(0, 10)] = 2
    tls_verify: bool = True
    ca_file: Annotated[Path | None, Mark.EXISTS] = None
    routes: Annotated[tuple[RouteSettings, ...], Mark.NON_EMPTY] = ()
    oauth2: OAuth2Settings | None = None
    public_url: str = ""  # overrides server.public_url for this service's issuer


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSettings:
    name: _Name
    client_id: _Key
    client_secret: Annotated[str | None, Mark.FROM_FILE] = None
    client_secret_hash: str | None = None
    redirect_uris: tuple[str, ...] = ()
    client_type: Literal["confidential", "public"] = "confidential"
    tags: tuple[str, ...] = ()  # kept beside the tag that marks it config's (bootstrap.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    username: _Key
    custom_id: Annotated[str | None, Mark.IDENTITY] = None
    tags: tuple[str, ...] = ()  # kept beside the tag that marks it config's (bootstrap.py)
    oauth2: tuple[CredentialSettings, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    services: tuple[ServiceSettings, ...] = ()
    consumers: tuple[ConsumerSettings, ...] = ()
    source: Path  # the config file, absolute; set by the loader, never a TOML key
