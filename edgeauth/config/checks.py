"""Cross-field checks: run by the walker on each dataclass it has built, keyed by type in CHECKS.

Invariants: a check sees only fully converted values; it reports problems to the Context instead of
raising, and returns the value, possibly normalised (absolute paths, provision keys read).
Rules that span tables (unique names, unambiguous routes) run once, on the whole Settings.
"""

import ipaddress
import os
import pwd
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeauth.config.scalars import fold, show
from edgeauth.config.schema import (
    Address,
    AdminSettings,
    Bad,
    ConsumerSettings,
    CredentialSettings,
    LogSettings,
    OAuth2Settings,
    RouteSettings,
    ServiceSettings,
    Settings,
    StoreSettings,
    StreamSettings,
    stream_upstream,
)
from edgeauth.config.walker import Check, Context, join, read_secret
from edgeauth.stream.peer import parse_san, parse_subject

_NAME = re.compile(r"[A-Za-z0-9._~-]+")  # Kong's name alphabet; service names also name files
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Z-]+")  # RFC 9110 §5.6.2, upper-case only
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # the same, lower-case only
_HASH_PREFIX = "$pbkdf2-sha512$"
_TAG = re.compile(r"[!-~]+")  # Kong's tags: printable ASCII, no space; "," and "/" are filters


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_admin(admin: AdminSettings, path: str, ctx: Context) -> AdminSettings:
    """The admin API mints credentials: off-host exposure needs an explicit opt-in and TLS."""
    has_tls = admin.tls_cert_file is not None and admin.tls_key_file is not None
    if not has_tls and (admin.tls_cert_file is not None or admin.tls_key_file is not None):
        ctx.problem(path, "set both tls_cert_file and tls_key_file, or neither")
    if not _is_loopback(admin.listen.host) and not (admin.allow_remote and has_tls):
        ctx.problem(
            join(path, "listen"),
            f"{admin.listen} is not a loopback address; a remote admin API needs"
            " allow_remote = true and both tls_cert_file and tls_key_file",
        )
    return admin


def _check_store(store: StoreSettings, path: str, ctx: Context) -> StoreSettings:
    if store.backend == "postgres" and not store.dsn:
        ctx.problem(join(path, "dsn"), 'backend "postgres" needs dsn or dsn_file')
    return store


def _log_target(value: str, stream: str, key: str, ctx: Context) -> str:
    """A log destination: the named stream, "off", or a file path made absolute (a relative
    one in the logs directory: $LOGS_DIRECTORY under systemd, else the config's)."""
    if value in (stream, "off"):
        return value
    if not value:
        ctx.problem(key, f'expected "{stream}", "off" or a file path')
        return value
    return str(ctx.logs / value)


def _check_log(log: LogSettings, path: str, ctx: Context) -> LogSettings:
    return replace(
        log,
        access_log=_log_target(log.access_log, "stdout", join(path, "access_log"), ctx),
        audit_log=_log_target(log.audit_log, "stderr", join(path, "audit_log"), ctx),
    )


def _path_problem(route_path: str) -> str | None:
    """Route prefixes must be normalized already: requests are normalized before matching (§3)."""
    if not route_path.startswith("/"):
        return f'must start with "/", got {show(route_path)}'
    if bad := [c for c in ("?", "#", "\\", ";", "%3B", "%3b", "//") if c in route_path]:
        return f'must not contain "{bad[0]}", got {show(route_path)}'
    if {".", ".."} & set(route_path.split("/")):
        return f'must not contain "." or ".." segments, got {show(route_path)}'
    return None


def _check_route(route: RouteSettings, path: str, ctx: Context) -> RouteSettings:
    _check_name(route.name, join(path, "name"), ctx)
    for i, route_path in enumerate(route.paths):
        if problem := _path_problem(route_path):
            ctx.problem(f"{path}.paths[{i}]", problem)
    for i, method in enumerate(route.methods):
        if not _TOKEN.fullmatch(method):
            ctx.problem(f"{path}.methods[{i}]", f"not an HTTP method token: {show(method)}")
    return route


def _check_oauth2(oauth2: OAuth2Settings, path: str, ctx: Context) -> OAuth2Settings:
    grants = ("authorization_code", "client_credentials", "password_grant", "implicit_grant")
    if not any(getattr(oauth2, f"enable_{grant}") for grant in grants):
        ctx.problem(path, "enable at least one grant: " + ", ".join(f"enable_{g}" for g in grants))
    if oauth2.mandatory_scope and not oauth2.scopes:
        ctx.problem(join(path, "mandatory_scope"), "mandatory_scope = true needs non-empty scopes")
    if oauth2.provision_key is not None and oauth2.provision_key_file is not None:
        ctx.problem(
            join(path, "provision_key_file"),
            'give "provision_key" or "provision_key_file", not both',
        )
    return oauth2


def _check_name(name: str, path: str, ctx: Context) -> None:
    if not _NAME.fullmatch(name):
        ctx.problem(path, f"use only letters, digits and . _ ~ -; got {show(name)}")


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return f"not a valid URL: {show(url)}"
    if (schemes and parts.scheme not in schemes) or not parts.scheme or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes) or "an absolute"
        return f"expected {wanted} URL with a host, got {show(url)}"
    if "#" in url:
        return f"must not have a fragment, got {show(url)}"
    return None


def _public_url(url: str, path: str, ctx: Context) -> str:
    """An issuer origin (and optional path): absolute http(s), no query, fragment or user;
    returned without a trailing slash, as route prefixes are appended to it."""
    if not url:
        return url
    problem = _url_problem(url, ("http", "https"))
    if problem is None and ("?" in url or "@" in urlsplit(url).netloc):
        problem = f"must not have a query or user info, got {show(url)}"
    if problem:
        ctx.problem(path, problem)
    return url.rstrip("/")


def _check_service(service: ServiceSettings, path: str, ctx: Context) -> ServiceSettings:
    _check_name(service.name, join(path, "name"), ctx)
    public_url = _public_url(service.public_url, join(path, "public_url"), ctx)
    if public_url != service.public_url:
        service = replace(service, public_url=public_url)
    problem = _url_problem(service.url, ("http", "https"))
    if problem is None and "?" in service.url:
        problem = f"must not have a query, got {show(service.url)}"
    if problem:
        ctx.problem(join(path, "url"), problem)
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
    oauth2 = _provision(service.oauth2, service.name, join(path, "oauth2.provision_key_file"), ctx)
    return replace(service, oauth2=oauth2)


def _provision(oauth2: OAuth2Settings, service: str, path: str, ctx: Context) -> OAuth2Settings:
    """edgeauth creates a missing provision key itself, so its file is read only if it exists."""
    file = oauth2.provision_key_file
    file = ctx.state / "var" / f"{service}.provision_key" if file is None else file
    key = read_secret(file, path, ctx) if file.exists() else None
    return replace(oauth2, provision_key_file=file, provision_key=key)


def _check_credential(cred: CredentialSettings, path: str, ctx: Context) -> CredentialSettings:
    has_secret = cred.client_secret is not None or cred.client_secret_hash is not None
    if cred.client_secret is not None and cred.client_secret_hash is not None:
        ctx.problem(
            join(path, "client_secret_hash"),
            "give at most one of client_secret, client_secret_file, client_secret_hash",
        )
    if cred.client_type == "public" and has_secret:
        ctx.problem(join(path, "client_type"), "a public client must not have a client secret")
    if cred.client_secret_hash is not None and not cred.client_secret_hash.startswith(_HASH_PREFIX):
        ctx.problem(join(path, "client_secret_hash"), f'must start with "{_HASH_PREFIX}"')
    for i, uri in enumerate(cred.redirect_uris):
        if problem := _url_problem(uri, ()):
            ctx.problem(f"{path}.redirect_uris[{i}]", problem)
    _check_tags(cred.tags, join(path, "tags"), ctx)
    return cred


def _check_consumer(consumer: ConsumerSettings, path: str, ctx: Context) -> ConsumerSettings:
    _check_tags(consumer.tags, join(path, "tags"), ctx)
    return consumer


def _check_tags(tags: tuple[str, ...], path: str, ctx: Context) -> None:
    """The admin API's rule, so that `?tags=` filters can find what config tags."""
    for i, tag in enumerate(tags):
        if not _TAG.fullmatch(tag) or "," in tag or "/" in tag:
            ctx.problem(
                f"{path}[{i}]", f'use printable ASCII without space, "," or "/"; got {show(tag)}'
            )


_HOST_LABELS = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
# The keys of TLS termination: a passthrough stream relays TLS untouched, a plain one has none.
_TERMINATION_KEYS = ("tls_cert_file", "tls_key_file", "client_ca_file")


def _server_name_problem(name: str) -> str | None:
    """An SNI name: a DNS name, or "*." and one; SNI never carries an IP address."""
    host = name[2:] if name.startswith("*.") else name
    if not _HOST_LABELS.fullmatch(host):
        return f'expected a DNS name or "*.domain", got {show(name)}'
    if host.replace(".", "").isdigit():
        return f"an IP address is never sent as SNI, got {show(name)}"
    return None


def _check_stream(stream: StreamSettings, path: str, ctx: Context) -> StreamSettings:
    """The keys of one stream that only make sense together (README, TCP/TLS streams)."""
    _check_name(stream.name, join(path, "name"), ctx)
    try:
        scheme, _, _ = stream_upstream(stream.upstream)
    except Bad as bad:
        ctx.problem(join(path, "upstream"), str(bad))
        scheme = ""
    if scheme == "tcp":  # a key that would only ever be ignored
        if stream.ca_file is not None:
            ctx.problem(join(path, "ca_file"), "only a tls:// upstream has a certificate to verify")
        if not stream.tls_verify:
            ctx.problem(join(path, "tls_verify"), "only a tls:// upstream has a certificate")
    for i, name in enumerate(stream.server_names):
        if problem := _server_name_problem(name):
            ctx.problem(f"{path}.server_names[{i}]", problem)
    if (stream.tls_cert_file is None) != (stream.tls_key_file is None):
        ctx.problem(path, "set both tls_cert_file and tls_key_file, or neither")
    if stream.passthrough:
        _not_set(stream, path, "passthrough = true relays the TLS untouched", ctx)
        if not stream.tls:
            ctx.problem(join(path, "tls"), "passthrough = true routes TLS by its SNI: drop tls")
    elif not stream.tls:
        _not_set(stream, path, "tls = false terminates no TLS", ctx)
        if stream.server_names:
            ctx.problem(join(path, "server_names"), "tls = false: no TLS hello, so no SNI name")
    elif stream.client_ca_file is None:
        for key in ("allowed_subjects", "allowed_sans"):
            if getattr(stream, key):
                ctx.problem(join(path, key), f"{key} needs client_ca_file (mutual TLS)")
    for key, parse in (("allowed_subjects", parse_subject), ("allowed_sans", parse_san)):
        for i, text in enumerate(getattr(stream, key)):
            try:
                parse(text)
            except ValueError as exc:
                ctx.problem(f"{path}.{key}[{i}]", str(exc))
    return stream


def _not_set(stream: StreamSettings, path: str, why: str, ctx: Context) -> None:
    for key in (*_TERMINATION_KEYS, "allowed_subjects", "allowed_sans"):
        if getattr(stream, key):
            ctx.problem(join(path, key), f"{why}: {key} must not be set")


def stream_addresses(settings: Settings) -> tuple[Address, ...]:
    """The distinct addresses stream listeners are bound to, in a fixed order (the supervisor
    binds them in this order and workers read their sockets in it); streams naming the same
    address share its listener."""
    return tuple(sorted({a for s in settings.streams for a in s.listen}, key=str))


def _check_streams(settings: Settings, ctx: Context) -> Settings:
    """Names unique; per listener: one default at most, each SNI name once, TLS or not alike.
    Terminating streams without a certificate of their own get the server's."""
    streams = list(enumerate(settings.streams))
    _unique(((f"streams[{i}].name", s.name) for i, s in streams), "stream name", ctx)
    for address in stream_addresses(settings):
        sharing = [(i, s) for i, s in streams if address in s.listen]
        defaults = [(i, s) for i, s in sharing if not s.server_names]
        for i, stream in defaults[1:]:
            ctx.problem(
                f"streams[{i}].server_names",
                f'stream "{stream.name}" and stream "{defaults[0][1].name}" are both the default'
                f" of {address}: give one of them server_names",
            )
        names = ((f"streams[{i}].server_names", n) for i, s in sharing for n in s.server_names)
        _unique(names, f"server name on {address}:", ctx)
        plain = [(i, s) for i, s in sharing if not s.tls]
        if plain and len(sharing) > 1:
            i, stream = plain[0]
            ctx.problem(
                f"streams[{i}].tls",
                f'stream "{stream.name}" (tls = false) shares {address} with other streams;'
                " a plain listener has no SNI to choose by: give it an address of its own",
            )
    server = settings.server
    filled = tuple(
        replace(s, tls_cert_file=server.tls_cert_file, tls_key_file=server.tls_key_file)
        if s.tls and not s.passthrough and s.tls_cert_file is None
        else s
        for s in settings.streams
    )
    return replace(settings, streams=filled) if filled != settings.streams else settings


def _unique(items: Iterable[tuple[str, str]], what: str, ctx: Context) -> None:
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


def _prefix(route_path: str, folded: bool) -> str:
    prefix = route_path.rstrip("/") or "/"
    return fold(prefix) if folded else prefix


def _check_ambiguous(routes: list[tuple[str, RouteSettings]], ctx: Context) -> None:
    """Two routes that can match the same request with equal rank make routing order-dependent;
    a case-insensitive route's prefix clashes with every spelling of it."""
    for i, (first_path, first) in enumerate(routes):
        for path, route in routes[i + 1 :]:
            if not _clash(first.hosts, route.hosts, _same_host):
                continue
            if not _clash(first.methods, route.methods, str.__eq__):
                continue
            folded = first.case_insensitive or route.case_insensitive
            prefixes = {_prefix(p, folded) for p in first.paths}
            for k, route_path in enumerate(route.paths):
                if _prefix(route_path, folded) in prefixes:
                    ctx.problem(
                        f"{path}.paths[{k}]",
                        f'route "{route.name}" is ambiguous with route "{first.name}" '
                        f"({first_path}): same path {show(route_path)} with overlapping"
                        " hosts and methods",
                    )


def _check_server_keys(settings: Settings, ctx: Context) -> Settings:
    """server.public_url and drop_request_headers (checked here, beside the other tables)."""
    server = settings.server
    for i, name in enumerate(server.drop_request_headers):
        if not _FIELD_NAME.fullmatch(name):
            ctx.problem(f"server.drop_request_headers[{i}]", f"not a header name: {show(name)}")
    public_url = _public_url(server.public_url, "server.public_url", ctx)
    if public_url == server.public_url:
        return settings
    return replace(settings, server=replace(server, public_url=public_url))


_WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 (compared against, never bound here)


def _overlap(a: Address, b: Address) -> bool:
    """Two listen addresses the kernel would let our SO_REUSEPORT sockets share silently."""
    if a.port == 0 or a.port != b.port:
        return False
    if a.host == b.host:
        return True
    same_family = (":" in a.host) == (":" in b.host)
    return same_family and (a.host in _WILDCARDS or b.host in _WILDCARDS)


def _check_listeners(settings: Settings, ctx: Context) -> None:
    """Every listener needs an address of its own: SO_REUSEPORT would let two of edgeauth's
    own listeners bind one port, and the kernel would spread connections between them."""
    keyed = [
        *((f"server.listen[{i}]", a) for i, a in enumerate(settings.server.listen)),
        *((f"server.http_listen[{i}]", a) for i, a in enumerate(settings.server.http_listen)),
        ("admin.listen", settings.admin.listen),
        *((f"status.listen[{i}]", a) for i, a in enumerate(settings.status.listen)),
    ]
    shared: dict[Address, str] = {}  # streams naming one address share its listener
    for i, stream in enumerate(settings.streams):
        for j, address in enumerate(stream.listen):
            if address not in shared:
                shared[address] = f"streams[{i}].listen[{j}]"
                keyed.append((shared[address], address))
    for i, (key, address) in enumerate(keyed):
        for first, other in keyed[:i]:
            if _overlap(address, other):
                ctx.problem(key, f"{address} overlaps {first} ({other}); give each its own port")
                break


def _check_settings(settings: Settings, path: str, ctx: Context) -> Settings:
    settings = _check_server_keys(settings, ctx)
    _check_listeners(settings, ctx)
    settings = _check_streams(settings, ctx)
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


_DEFAULT_PORTS = {"http": 80, "https": 443}
_Upstream = tuple[tuple[str, str, int], tuple[str, ...]]  # (scheme, host, port), path segments


def _upstreams(service: ServiceSettings) -> set[_Upstream]:
    """Where the service's routes lead upstream: its URL, plus the route prefix when the
    route keeps it (strip_path = false), as whole path segments."""
    parts = urlsplit(service.url)
    origin = (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or _DEFAULT_PORTS[parts.scheme],
    )
    base = tuple(seg for seg in parts.path.split("/") if seg)
    found = set()
    for route in service.routes:
        for path in route.paths:
            kept = () if route.strip_path else tuple(seg for seg in path.split("/") if seg)
            found.add((origin, base + kept))
    return found


def _contains(outer: _Upstream, inner: _Upstream) -> bool:
    return outer[0] == inner[0] and inner[1][: len(outer[1])] == outer[1]


def exposure_warnings(settings: Settings) -> list[str]:
    """Public services whose upstream contains a protected one's: the protected API is then
    reachable through the public route without a token; and consumer names on the status
    listener's /metrics. Settings must be valid already."""
    warnings = status_metrics_exposure(settings)
    services = list(enumerate(settings.services))
    for i, public in services:
        if public.oauth2 is not None:
            continue
        reach = _upstreams(public)
        for _, protected in services:
            if protected.oauth2 is None:
                continue
            if any(_contains(p, q) for p in reach for q in _upstreams(protected)):
                warnings.append(
                    f"{settings.source.name}: services[{i}].url: public service"
                    f' "{public.name}" ({public.url}) also reaches the upstream of protected'
                    f' service "{protected.name}" ({protected.url}) without a token; give it'
                    " a base path of its own"
                )
    return warnings


def status_metrics_exposure(settings: Settings) -> list[str]:
    """The status listener has no token: with per-consumer metrics, its /metrics tells anyone
    who reaches it every consumer's username."""
    status, metrics = settings.status, settings.metrics
    if not (status.listen and status.metrics and metrics.enabled and metrics.per_consumer):
        return []
    return [
        f"{settings.source.name}: status.metrics: the status listener serves /metrics without"
        " a token, and with metrics.per_consumer = true its consumer label shows every"
        " consumer's username to anyone who reaches status.listen; keep it on a private"
        " address or turn one of them off"
    ]


def restart_needed(old: Settings, new: Settings) -> list[str]:
    """Keys a reload cannot apply: the supervisor binds the listeners and starts the workers
    once, so a config changing them is refused whole rather than half applied."""
    changes = {
        "server.listen": (old.server.listen, new.server.listen),
        "server.http_listen": (old.server.http_listen, new.server.http_listen),
        "admin.listen": ((old.admin.listen,), (new.admin.listen,)),
        "status.listen": (old.status.listen, new.status.listen),
        "server.workers": (old.server.workers, new.server.workers),
        "streams[].listen": (stream_addresses(old), stream_addresses(new)),
    }
    return [
        f"{new.source.name}: {key}: a reload cannot change it (running: {_shown(was)}); restart"
        " instead"
        for key, (was, now) in changes.items()
        if was != now
    ]


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def anonymous_notes(settings: Settings) -> list[str]:
    """Routes whose required_scopes turn off their service's `anonymous` fallback: an
    anonymous consumer holds no scope, so such a route refuses a missing or invalid token."""
    notes = []
    for i, service in enumerate(settings.services):
        if service.oauth2 is None or not service.oauth2.anonymous:
            continue
        for j, route in enumerate(service.routes):
            if route.required_scopes:
                notes.append(
                    f"{settings.source.name}: services[{i}].routes[{j}]: route"
                    f' "{route.name}" requires scopes, so it never falls back to the anonymous'
                    f' consumer "{service.oauth2.anonymous}": a request without a valid token'
                    " gets 401 there"
                )
    return notes


def unwritable_paths(settings: Settings) -> list[str]:
    """Files the gateway will write (or create) that the current user cannot: what
    check-config, run as the service user by ExecStartPre and ExecReload, refuses before a
    start or reload, rather than the gateway failing on its first write."""
    user = _user()
    return [
        f"{settings.source.name}: {key}: {problem}"
        for key, file, check in _written_files(settings)
        if (problem := check(file, user))
    ]


_FileCheck = Callable[[Path, str], str | None]  # a file, the user's name → why not, or None


def _written_files(settings: Settings) -> Iterator[tuple[str, Path, _FileCheck]]:
    """Each file the gateway writes, with its key path and the rule it must meet."""
    yield "admin.token_file", settings.admin.token_file, _generated
    for i, service in enumerate(settings.services):
        if service.oauth2 is not None and service.oauth2.provision_key_file is not None:
            key = f"services[{i}].oauth2.provision_key_file"
            yield key, service.oauth2.provision_key_file, _generated
    if settings.store.backend == "sqlite":
        yield "store.path", settings.store.path, _database
    for key in ("access_log", "audit_log"):
        target = getattr(settings.log, key)
        if target not in ("stdout", "stderr", "off"):
            yield f"log.{key}", Path(target), _log_file
    if settings.admin.allow_config_post:
        yield "admin.allow_config_post", settings.source, _rewritten_config


def _user() -> str:
    """The real user, whose rights os.access checks."""
    try:
        return f"user {pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"uid {os.getuid()}"


def _creatable(file: Path, user: str) -> str | None:
    """A missing file: its closest existing ancestor must be a directory the user can write
    (edgeauth creates the directories in between, 0700)."""
    ancestor = file.parent
    while not os.path.exists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.path.isdir(ancestor):
        return f"cannot create {file}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {file}: {ancestor} is not writable by {user}"
    return None


def _existing(file: Path, mode: int, user: str) -> str | None:
    if not os.path.isfile(file):
        return f"{file} is not a regular file"
    if not os.access(file, mode):
        need = {os.R_OK: "readable", os.W_OK: "writable"}.get(mode, "readable and writable")
        return f"{file} is not {need} by {user}"
    return None


def _generated(file: Path, user: str) -> str | None:
    """A secret edgeauth generates when missing (bootstrap.read_or_create_secret) and only
    reads once it exists."""
    return _existing(file, os.R_OK, user) if os.path.exists(file) else _creatable(file, user)


def _database(file: Path, user: str) -> str | None:
    """SQLite writes the file and, beside it, its journal (-wal, -shm): the directory too."""
    if not os.path.exists(file):
        return _creatable(file, user)
    journal = [Path(f"{file}{end}") for end in ("-wal", "-shm")]
    for path in (file, *(part for part in journal if os.path.exists(part))):
        if problem := _existing(path, os.R_OK | os.W_OK, user):
            return problem
    if not os.access(file.parent, os.W_OK | os.X_OK):
        return f"{file.parent} is not writable by {user} (SQLite keeps its journal there)"
    return None


def _log_file(file: Path, user: str) -> str | None:
    """Log files are appended to and created, but their directory must exist."""
    if os.path.exists(file):
        return _existing(file, os.W_OK, user)
    if not os.path.isdir(file.parent):
        return (
            f"cannot create {file}: {file.parent} does not exist"
            " (edgeauth creates log files, not directories)"
        )
    return _creatable(file, user)


def _rewritten_config(source: Path, user: str) -> str | None:
    """POST /config writes a new file beside config.toml and renames it over the old one."""
    directory = Path(os.path.realpath(source)).parent
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    return f"POST /config rewrites {source.name}, but {directory} is not writable by {user}"


_POSTGRES_ONLY = 'only the postgres backend reads it, and store.backend is "sqlite"'


def inert_keys(settings: Settings) -> list[str]:
    """Keys that are set but do nothing in this version, or with the rest of this config:
    warned, never refused, so an operator does not wait for an effect that never comes."""
    store, status, metrics = settings.store, settings.status, settings.metrics
    inert = {
        "store.dsn": (bool(store.dsn) and store.backend == "sqlite", _POSTGRES_ONLY),
        "store.pool_size": (
            store.pool_size != StoreSettings().pool_size and store.backend == "sqlite",
            _POSTGRES_ONLY,
        ),
        "status.metrics": (
            status.metrics and not (status.listen and metrics.enabled),
            'the status listener is off (status.listen = "")'
            if not status.listen
            else "metrics.enabled is false",
        ),
        "metrics.per_consumer": (
            metrics.per_consumer and not metrics.enabled,
            "metrics.enabled is false",
        ),
    }
    return [
        f"{settings.source.name}: {key}: does nothing: {why}"
        for key, (is_set, why) in inert.items()
        if is_set
    ]


CHECKS: dict[type[Any], Check] = {
    AdminSettings: _check_admin,
    StoreSettings: _check_store,
    LogSettings: _check_log,
    RouteSettings: _check_route,
    OAuth2Settings: _check_oauth2,
    ServiceSettings: _check_service,
    StreamSettings: _check_stream,
    CredentialSettings: _check_credential,
    ConsumerSettings: _check_consumer,
    Settings: _check_settings,
}
