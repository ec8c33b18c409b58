"""config.toml → Settings: frozen, slotted dataclasses, built and validated once at startup.

Invariants: every problem is collected and raised together in one ConfigError, one line each,
"<file>: <key path>: <message>"; unknown keys are errors with a did-you-mean hint; relative paths
are resolved against the config file's directory; EDGEAUTH_<SECTION>_<KEY> variables override
scalars before validation. Reads only the files the config names; imports only edgeauth.errors.
"""

import difflib
import enum
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from edgeauth.errors import ConfigError


class _Bad(Exception):
    """One value is unusable; the walker turns it into a problem line at that value's key path."""


class _Mark(enum.Enum):
    """Field annotations the walker acts on, declared next to the field they govern."""

    NON_EMPTY = "non-empty"  # a string or array that must have content
    AUTO_CPU = "auto"  # the string "auto" stands for os.cpu_count()
    FROM_FILE = "from-file"  # a sibling key "<name>_file" may name a file holding the value
    EXISTS = "exists"  # a file edgeauth only reads (certificate, CA bundle): checked at startup
    LOWER = "lower"
    UPPER = "upper"


@dataclass(frozen=True, slots=True)
class _Range:
    """Inclusive numeric limits of a field; `above` makes the lower limit exclusive."""

    low: float
    high: float | None = None
    above: bool = False

    def check(self, value: float) -> None:
        if self.above and value <= self.low:
            raise _Bad(f"must be greater than {self.low}, got {value}")
        if self.high is not None and not self.low <= value <= self.high:
            raise _Bad(f"must be between {self.low} and {self.high}, got {value}")
        if value < self.low:
            raise _Bad(f"must be at least {self.low}, got {value}")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Name = Annotated[str, _Mark.NON_EMPTY]
_Seconds = Annotated[float, _Range(0, above=True)]
_Count = Annotated[int, _Range(1)]
_Unsigned = Annotated[int, _Range(0)]


@dataclass(frozen=True, slots=True)
class Address:
    """A listen address; `host` carries no IPv6 brackets, and port 0 means "any free port"."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    listen: Annotated[tuple[Address, ...], _Mark.NON_EMPTY] = (Address("0.0.0.0", 8443),)  # noqa: S104 (design §2 default)
    http_listen: tuple[Address, ...] = ()
    workers: Annotated[int, _Range(1, 256), _Mark.AUTO_CPU] = 1
    tls_cert_file: Annotated[Path, _Mark.EXISTS] = Path("certs/edgeauth.crt")
    tls_key_file: Annotated[Path, _Mark.EXISTS] = Path("certs/edgeauth.key")
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    trusted_proxies: tuple[Network, ...] = ()
    handshake_timeout_seconds: _Seconds = 10.0
    header_timeout_seconds: _Seconds = 10.0
    keepalive_timeout_seconds: _Seconds = 60.0
    max_connections: _Count = 10_000
    max_inflight_requests: _Count = 1024
    drain_seconds: Annotated[float, _Range(0)] = 30.0
    request_id_header: _Name = "X-Request-ID"
    max_request_line_bytes: _Count = 8192
    max_header_count: _Count = 100
    max_header_bytes: _Count = 32768


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminSettings:
    listen: Address = Address("127.0.0.1", 8001)
    token_file: Path = Path("var/admin.token")
    ui: bool = True
    allow_remote: bool = False
    tls_cert_file: Annotated[Path | None, _Mark.EXISTS] = None
    tls_key_file: Annotated[Path | None, _Mark.EXISTS] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: Path = Path("var/edgeauth.db")
    dsn: Annotated[str, _Mark.FROM_FILE] = ""
    pool_size: _Count = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    max_tokens: _Count = 100_000
    negative_ttl_seconds: Annotated[float, _Range(0, 60)] = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: str = "stdout"  # "stdout" | "off" | an absolute file path once parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    enabled: bool = True
    per_consumer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSettings:
    name: _Name
    paths: Annotated[tuple[str, ...], _Mark.NON_EMPTY]
    hosts: tuple[Annotated[str, _Mark.LOWER], ...] = ()
    methods: tuple[Annotated[str, _Mark.UPPER], ...] = ()
    strip_path: bool = True
    required_scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuth2Settings:
    scopes: tuple[str, ...] = ()
    mandatory_scope: bool = False
    provision_key: str | None = None
    provision_key_file: Path | None = None
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
    auth_header_name: Annotated[str, _Mark.NON_EMPTY, _Mark.LOWER] = "authorization"
    realm: str = "edgeauth"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    name: _Name
    url: _Name
    connect_timeout_seconds: _Seconds = 5.0
    read_timeout_seconds: _Seconds = 60.0
    max_connections: _Count = 100
    max_request_body_bytes: _Unsigned = 10_485_760
    retries: Annotated[int, _Range(0, 10)] = 2
    tls_verify: bool = True
    ca_file: Annotated[Path | None, _Mark.EXISTS] = None
    routes: Annotated[tuple[RouteSettings, ...], _Mark.NON_EMPTY] = ()
    oauth2: OAuth2Settings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSettings:
    name: _Name
    client_id: _Name
    client_secret: Annotated[str | None, _Mark.FROM_FILE] = None
    client_secret_hash: str | None = None
    redirect_uris: tuple[str, ...] = ()
    client_type: Literal["confidential", "public"] = "confidential"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    username: _Name
    custom_id: str | None = None
    oauth2: tuple[CredentialSettings, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    services: tuple[ServiceSettings, ...] = ()
    consumers: tuple[ConsumerSettings, ...] = ()
    source: Path  # the config file, absolute; set by the loader, never a TOML key


# ---- the generic walker -------------------------------------------------------------------

_INVALID: Any = object()  # a value already reported as a problem; poisons its parent quietly


@dataclass(slots=True)
class _Context:
    """Collects problems during one walk and knows the directory relative paths start from."""

    file: str
    base: Path
    aliases: dict[str, str] = field(default_factory=dict)  # key path → overriding env variable
    problems: list[str] = field(default_factory=list)

    def problem(self, path: str, message: str) -> None:
        for key, variable in self.aliases.items():
            if path == key or path.startswith(key + "["):
                path = variable
                break
        self.problems.append(f"{self.file}: {path}: {message}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    """Renders a TOML value the way the operator wrote it, so messages quote their own input."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "a table"
    return "an array" if isinstance(value, list) else str(value)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _Bad(f"expected a boolean (true or false), got {_show(value)}")


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):  # TOML true is not 1
        return value
    raise _Bad(f"expected an integer, got {_show(value)}")


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise _Bad(f"expected a finite number, got {_show(value)}")


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _Bad(f"expected a string, got {_show(value)}")


_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _address(value: object) -> Address:
    """Parses "host:port" or "[v6]:port"; bare IPv6 is refused since its last colon is ambiguous."""
    if isinstance(value, Address):  # a default
        return value
    text = _string(value)
    host, _, port = text.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise _Bad(f'expected "host:port", got {_show(text)}')
    try:
        if host.startswith("[") and host.endswith("]"):
            host = str(ipaddress.IPv6Address(host[1:-1]))
        elif host.replace(".", "").isdigit():
            host = str(ipaddress.IPv4Address(host))
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(host)
    except ValueError:
        hint = ' (IPv6 needs brackets: "[::1]:8443")' if ":" in host and host[0] != "[" else ""
        raise _Bad(f"invalid host in {_show(text)}{hint}") from None
    if int(port) > 65535:
        raise _Bad(f"port must be 0..65535, got {port}")
    return Address(host, int(port))


def _network(value: object) -> Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):  # a default
        return value
    try:
        return ipaddress.ip_network(_string(value), strict=False)
    except ValueError:
        raise _Bad(f"not an IP address or CIDR: {_show(value)}") from None


_LEAVES: dict[object, Callable[[object], object]] = {
    bool: _boolean,
    int: _integer,
    float: _number,
    str: _string,
    Address: _address,
    Network: _network,
}


def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def _secret_fields(cls: type[Any]) -> list[str]:
    return [n for n, h in _hints(cls).items() if _Mark.FROM_FILE in getattr(h, "__metadata__", ())]


def _keys(cls: type[Any]) -> list[str]:
    """The TOML keys a table accepts: its fields plus `<name>_file` for file-backed secrets."""
    return [f.name for f in fields(cls)] + [f"{n}_file" for n in _secret_fields(cls)]


def _is_table(hint: object) -> bool:
    return isinstance(hint, type) and is_dataclass(hint) and hint not in _LEAVES


def _convert(hint: Any, value: object, path: str, ctx: _Context) -> object:
    """Turns one TOML value into `hint`'s type, or records why not and returns _INVALID."""
    if value is _INVALID:
        return _INVALID
    try:
        return _dispatch(hint, value, path, ctx)
    except _Bad as bad:
        ctx.problem(path, str(bad))
        return _INVALID


def _dispatch(hint: Any, value: object, path: str, ctx: _Context) -> object:
    origin, args = get_origin(hint), get_args(hint)
    if hint in _LEAVES:
        return _LEAVES[hint](value)
    if origin is Annotated:
        return _annotated(args[0], args[1:], value, path, ctx)
    if origin is tuple:
        return _sequence(args[0], value, path, ctx)
    if origin is Literal:
        return _choice(args, value)
    if origin in (Union, UnionType) and NoneType in args:  # "" is how TOML spells "unset"
        inner = next(arg for arg in args if arg is not NoneType)
        return None if value is None or value == "" else _dispatch(inner, value, path, ctx)
    if hint is Path:
        if value == "":
            raise _Bad("expected a file path, got an empty string")
        return ctx.base / (value if isinstance(value, Path) else _string(value))
    return _build(hint, value, path, ctx)


def _annotated(
    base: Any, marks: tuple[Any, ...], value: object, path: str, ctx: _Context
) -> object:
    """Applies the marks declared on a field around the conversion of its base type."""
    if _Mark.AUTO_CPU in marks and value == "auto":
        value = min(os.cpu_count() or 1, 256)
    result = _dispatch(base, value, path, ctx)
    if isinstance(result, str):
        result = result.lower() if _Mark.LOWER in marks else result
        result = result.upper() if _Mark.UPPER in marks else result
    if _Mark.NON_EMPTY in marks and isinstance(result, str | tuple) and len(result) == 0:
        raise _Bad("must not be empty")
    for mark in marks:
        if isinstance(mark, _Range) and isinstance(result, int | float):
            mark.check(result)
    if _Mark.EXISTS in marks and isinstance(result, Path):
        _readable_file(result)
    return result


def _readable_file(file: Path) -> None:
    if not file.exists():
        raise _Bad(f"file not found: {file}")
    if not file.is_file():
        raise _Bad(f"not a regular file: {file}")
    if not os.access(file, os.R_OK):
        raise _Bad(f"file not readable: {file}")


def _sequence(item: Any, value: object, path: str, ctx: _Context) -> object:
    """Arrays become tuples; address and network lists also accept a comma-separated string."""
    if isinstance(value, str) and item in (Address, Network):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if len(parts) == 1:
            return (_dispatch(item, parts[0], path, ctx),)
        value = parts
    if not isinstance(value, list | tuple):  # a tuple is a default, never TOML
        raise _Bad(f"expected an array, got {_show(value)}")
    items = [_convert(item, element, f"{path}[{i}]", ctx) for i, element in enumerate(value)]
    return _INVALID if any(x is _INVALID for x in items) else tuple(items)


def _choice(choices: tuple[Any, ...], value: object) -> object:
    if isinstance(value, str) and value in choices:
        return value
    options = ", ".join(f'"{choice}"' for choice in choices)
    hint = _suggest(value, choices) if isinstance(value, str) else ""
    raise _Bad(f"expected one of {options}; got {_show(value)}{hint}")


def _build(
    cls: type[Any],
    raw: object,
    path: str,
    ctx: _Context,
    preset: Mapping[str, object] | None = None,
) -> object:
    """Builds one dataclass from a TOML table, then runs its cross-field check (if any)."""
    if not isinstance(raw, Mapping):
        raise _Bad(f"expected a table, got {_show(raw)}")
    table = dict(raw)
    values = dict(preset or {})
    _take_secret_files(cls, table, path, ctx)
    known = [key for key in _keys(cls) if key not in values]
    for key in table:
        if key not in known:
            what = "key" if path else "section"
            ctx.problem(_join(path, key), f'unknown {what} "{key}"{_suggest(key, known)}')
    for f in fields(cls):
        if f.name not in values:
            values[f.name] = _field_value(f, _hints(cls)[f.name], table, _join(path, f.name), ctx)
    if any(value is _INVALID for value in values.values()):
        return _INVALID
    check = _CHECKS.get(cls)
    built = cls(**values)
    return check(built, path, ctx) if check else built


def _field_value(
    f: Field[Any], hint: Any, table: Mapping[str, object], path: str, ctx: _Context
) -> object:
    """Defaults go through the same conversion as written values, so relative default paths
    are resolved and default certificate files must exist too; an absent section is {}."""
    if f.name in table:
        value = table[f.name]
    elif _is_table(hint):
        value = {}
    elif f.default is not MISSING:
        value = f.default
    else:
        ctx.problem(path, "required key is missing")
        return _INVALID
    return _convert(hint, value, path, ctx)


def _take_secret_files(cls: type[Any], table: dict[str, object], path: str, ctx: _Context) -> None:
    """Replaces each `<name>_file` key by the file's stripped content under `<name>`."""
    for name in _secret_fields(cls):
        key = f"{name}_file"
        if key not in table:
            continue
        where = _join(path, key)
        file = _convert(Path, table.pop(key), where, ctx)
        if name in table:
            ctx.problem(where, f'give "{name}" or "{key}", not both')
            table[name] = _INVALID
        elif isinstance(file, Path):
            secret = _read_secret(file, where, ctx)
            table[name] = _INVALID if secret is None else secret
        else:
            table[name] = _INVALID


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _read_secret(file: Path, path: str, ctx: _Context) -> str | None:
    """Secrets come from files (systemd LoadCredential=); surrounding whitespace is never part."""
    try:
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        ctx.problem(path, f"cannot read secret file {file}: {_reason(exc)}")
        return None
    if not text:
        ctx.problem(path, f"secret file {file} is empty")
        return None
    return text


# ---- cross-field checks: run on each built value, may normalise it ---------------------------

_NAME = re.compile(r"[A-Za-z0-9._~-]+")  # Kong's name alphabet; service names also name files
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Z-]+")  # RFC 9110 §5.6.2, upper-case only
_HASH_PREFIX = "$pbkdf2-sha512$"


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_admin(admin: AdminSettings, path: str, ctx: _Context) -> AdminSettings:
    """The admin API mints credentials: off-host exposure needs an explicit opt-in and TLS."""
    has_tls = admin.tls_cert_file is not None and admin.tls_key_file is not None
    if not has_tls and (admin.tls_cert_file is not None or admin.tls_key_file is not None):
        ctx.problem(path, "set both tls_cert_file and tls_key_file, or neither")
    if not _is_loopback(admin.listen.host) and not (admin.allow_remote and has_tls):
        ctx.problem(
            _join(path, "listen"),
            f"{admin.listen} is not a loopback address; a remote admin API needs"
            " allow_remote = true and both tls_cert_file and tls_key_file",
        )
    return admin


def _check_store(store: StoreSettings, path: str, ctx: _Context) -> StoreSettings:
    if store.backend == "postgres" and not store.dsn:
        ctx.problem(_join(path, "dsn"), 'backend "postgres" needs dsn or dsn_file')
    return store


def _check_log(log: LogSettings, path: str, ctx: _Context) -> LogSettings:
    if log.access_log in ("stdout", "off"):
        return log
    if not log.access_log:
        ctx.problem(_join(path, "access_log"), 'expected "stdout", "off" or a file path')
        return log
    return replace(log, access_log=str(ctx.base / log.access_log))


def _path_problem(route_path: str) -> str | None:
    """Route prefixes must be normalized already: requests are normalized before matching (§3)."""
    if not route_path.startswith("/"):
        return f'must start with "/", got {_show(route_path)}'
    if bad := [c for c in "?#\\" if c in route_path]:
        return f'must not contain "{bad[0]}", got {_show(route_path)}'
    if {".", ".."} & set(route_path.split("/")):
        return f'must not contain "." or ".." segments, got {_show(route_path)}'
    return None


def _check_route(route: RouteSettings, path: str, ctx: _Context) -> RouteSettings:
    _check_name(route.name, _join(path, "name"), ctx)
    for i, route_path in enumerate(route.paths):
        if problem := _path_problem(route_path):
            ctx.problem(f"{path}.paths[{i}]", problem)
    for i, method in enumerate(route.methods):
        if not _TOKEN.fullmatch(method):
            ctx.problem(f"{path}.methods[{i}]", f"not an HTTP method token: {_show(method)}")
    return route


def _check_oauth2(oauth2: OAuth2Settings, path: str, ctx: _Context) -> OAuth2Settings:
    grants = ("authorization_code", "client_credentials", "password_grant", "implicit_grant")
    if not any(getattr(oauth2, f"enable_{grant}") for grant in grants):
        ctx.problem(path, "enable at least one grant: " + ", ".join(f"enable_{g}" for g in grants))
    if oauth2.mandatory_scope and not oauth2.scopes:
        ctx.problem(_join(path, "mandatory_scope"), "mandatory_scope = true needs non-empty scopes")
    if oauth2.provision_key is not None and oauth2.provision_key_file is not None:
        ctx.problem(
            _join(path, "provision_key_file"),
            'give "provision_key" or "provision_key_file", not both',
        )
    return oauth2


def _check_name(name: str, path: str, ctx: _Context) -> None:
    if not _NAME.fullmatch(name):
        ctx.problem(path, f"use only letters, digits and . _ ~ -; got {_show(name)}")


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return f"not a valid URL: {_show(url)}"
    if (schemes and parts.scheme not in schemes) or not parts.scheme or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes) or "an absolute"
        return f"expected {wanted} URL with a host, got {_show(url)}"
    if "#" in url:
        return f"must not have a fragment, got {_show(url)}"
    return None


def _check_service(service: ServiceSettings, path: str, ctx: _Context) -> ServiceSettings:
    _check_name(service.name, _join(path, "name"), ctx)
    problem = _url_problem(service.url, ("http", "https"))
    if problem is None and "?" in service.url:
        problem = f"must not have a query, got {_show(service.url)}"
    if problem:
        ctx.problem(_join(path, "url"), problem)
    scopes = None if service.oauth2 is None else set(service.oauth2.scopes)
    for i, route in enumerate(service.routes):
        where = f"{path}.routes[{i}].required_scopes"
        if route.required_scopes and scopes is None:
            ctx.problem(where, "required_scopes need a [services.oauth2] table on this service")
        elif missing := sorted(set(route.required_scopes) - (scopes or set())):
            listed = ", ".join(f'"{scope}"' for scope in missing)
            ctx.problem(where, f"not in {path}.oauth2.scopes: {listed}")
    if service.oauth2 is None or service.oauth2.provision_key is not None:
        return service
    oauth2 = _provision(service.oauth2, service.name, _join(path, "oauth2.provision_key_file"), ctx)
    return replace(service, oauth2=oauth2)


def _provision(oauth2: OAuth2Settings, service: str, path: str, ctx: _Context) -> OAuth2Settings:
    """edgeauth creates a missing provision key itself, so its file is read only if it exists."""
    file = oauth2.provision_key_file
    file = ctx.base / "var" / f"{service}.provision_key" if file is None else file
    key = _read_secret(file, path, ctx) if file.exists() else None
    return replace(oauth2, provision_key_file=file, provision_key=key)


def _check_credential(cred: CredentialSettings, path: str, ctx: _Context) -> CredentialSettings:
    has_secret = cred.client_secret is not None or cred.client_secret_hash is not None
    if cred.client_secret is not None and cred.client_secret_hash is not None:
        ctx.problem(
            _join(path, "client_secret_hash"),
            "give at most one of client_secret, client_secret_file, client_secret_hash",
        )
    if cred.client_type == "public" and has_secret:
        ctx.problem(_join(path, "client_type"), "a public client must not have a client secret")
    if cred.client_secret_hash is not None and not cred.client_secret_hash.startswith(_HASH_PREFIX):
        ctx.problem(_join(path, "client_secret_hash"), f'must start with "{_HASH_PREFIX}"')
    for i, uri in enumerate(cred.redirect_uris):
        if problem := _url_problem(uri, ()):
            ctx.problem(f"{path}.redirect_uris[{i}]", problem)
    return cred


def _unique(items: Iterable[tuple[str, str]], what: str, ctx: _Context) -> None:
    first: dict[str, str] = {}
    for path, value in items:
        if value in first:
            ctx.problem(path, f'duplicate {what} "{value}" (first at {first[value]})')
        first.setdefault(value, path)


def _same_host(a: str, b: str) -> bool:
    """Host patterns that can match one Host header; "*.x.example" is a suffix wildcard."""
    return a == b or any(p[:2] == "*." and q.endswith(p[1:]) for p, q in ((a, b), (b, a)))


def _clash(a: tuple[str, ...], b: tuple[str, ...], same: Callable[[str, str], bool]) -> bool:
    """Equally specific and sharing a value. Among equal prefixes a route naming hosts (then
    methods) outranks one that names none (design §3, routing.py rule 3): never ambiguous."""
    return bool(a) == bool(b) and (not a or any(same(x, y) for x in a for y in b))


def _check_ambiguous(routes: list[tuple[str, RouteSettings]], ctx: _Context) -> None:
    """Two routes that can match the same request with equal rank make routing order-dependent."""
    for i, (first_path, first) in enumerate(routes):
        prefixes = {p.rstrip("/") or "/" for p in first.paths}
        for path, route in routes[i + 1 :]:
            if not _clash(first.hosts, route.hosts, _same_host):
                continue
            if not _clash(first.methods, route.methods, str.__eq__):
                continue
            for k, route_path in enumerate(route.paths):
                if (route_path.rstrip("/") or "/") in prefixes:
                    ctx.problem(
                        f"{path}.paths[{k}]",
                        f'route "{route.name}" is ambiguous with route "{first.name}" '
                        f"({first_path}): same path {_show(route_path)} with overlapping"
                        " hosts and methods",
                    )


def _check_settings(settings: Settings, path: str, ctx: _Context) -> Settings:
    services = settings.services
    _unique(((f"services[{i}].name", s.name) for i, s in enumerate(services)), "service name", ctx)
    routes = [
        (f"services[{i}].routes[{j}]", route)
        for i, service in enumerate(services)
        for j, route in enumerate(service.routes)
    ]
    _unique(((f"{p}.name", route.name) for p, route in routes), "route name", ctx)
    _check_ambiguous(routes, ctx)
    consumers = list(enumerate(settings.consumers))
    _unique(((f"consumers[{i}].username", c.username) for i, c in consumers), "username", ctx)
    client_ids = (
        (f"consumers[{i}].oauth2[{j}].client_id", cred.client_id)
        for i, consumer in consumers
        for j, cred in enumerate(consumer.oauth2)
    )
    _unique(client_ids, "client_id", ctx)
    return settings


_CHECKS: dict[type[Any], Callable[[Any, str, _Context], Any]] = {
    AdminSettings: _check_admin,
    StoreSettings: _check_store,
    LogSettings: _check_log,
    RouteSettings: _check_route,
    OAuth2Settings: _check_oauth2,
    ServiceSettings: _check_service,
    CredentialSettings: _check_credential,
    Settings: _check_settings,
}


# ---- environment overrides and entry points ---------------------------------------------------

_ENV_PREFIX = "EDGEAUTH_"
_ENV_SECTIONS = ("server", "admin", "store", "cache", "log", "metrics")
_ENV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _from_env(hint: Any, text: str) -> object:
    """Parses text as the field's scalar type; unparsable text is left for the walker to report."""
    while get_origin(hint) in (Annotated, Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if hint is bool:
        return _ENV_BOOLS.get(text.strip().lower(), text)
    try:
        return hint(text) if hint in (int, float) else text
    except ValueError:
        return text


def _apply_environ(
    data: Mapping[str, object], environ: Mapping[str, str], ctx: _Context
) -> dict[str, object]:
    """EDGEAUTH_<SECTION>_<KEY> replaces one key; other EDGEAUTH_* names belong to others."""
    merged = dict(data)
    for variable in sorted(environ):
        section, _, key = variable.removeprefix(_ENV_PREFIX).lower().partition("_")
        if not variable.startswith(_ENV_PREFIX) or section not in _ENV_SECTIONS:
            continue
        cls = _hints(Settings)[section]
        if key not in _keys(cls):
            ctx.problem(variable, f'unknown key "{key}" in [{section}]{_suggest(key, _keys(cls))}')
            continue
        table = merged.get(section, {})
        if isinstance(table, Mapping):  # else the walker reports the section's type
            table = dict(table)
            for name in _secret_fields(cls):  # a file-backed secret replaces its sibling too
                if key in (name, f"{name}_file"):
                    table.pop(name, None)
                    table.pop(f"{name}_file", None)
            table[key] = _from_env(_hints(cls).get(key, str), environ[variable])
            merged[section] = table
            ctx.aliases[f"{section}.{key}"] = variable
    return merged


def parse_settings(
    data: Mapping[str, object], *, source: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validates parsed TOML into Settings; `environ` None means no overrides (pure callers)."""
    source = Path(source).absolute()
    ctx = _Context(file=source.name, base=source.parent)
    merged = _apply_environ(data, environ or {}, ctx)
    settings = _build(Settings, merged, "", ctx, preset={"source": source})
    if ctx.problems or not isinstance(settings, Settings):
        raise ConfigError(ctx.problems)
    return settings


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Reads and validates config.toml; overrides come from os.environ unless `environ` is given."""
    source = Path(path).absolute()
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([f"{source.name}: cannot read {source}: {_reason(exc)}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source.name}: TOML syntax error: {exc}"]) from exc
    return parse_settings(data, source=source, environ=os.environ if environ is None else environ)
