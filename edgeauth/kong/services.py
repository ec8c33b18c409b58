"""Kong services, routes and oauth2 plugins → edgeauth `[[services]]` tables (plain dicts). Pure.

Rule 1: a route is protected by the most specific enabled oauth2 plugin (its route's, else its
service's, else a global one), as in Kong. edgeauth has one OAuth policy per service, so a
Kong service whose routes are protected differently becomes one edgeauth service per policy:
the first keeps the Kong name, the others are named `<service>-<route>`.
Rule 2: whatever has no equivalent is listed in `not_carried` with why, never dropped
silently: other plugins, non-HTTP services, regex paths, route and service fields beyond
edgeauth's.
Rule 3: tokens name their service; `token_services` maps each Kong service id to the
edgeauth service its tokens are valid on (only services protected by oauth2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeauth.kong.model import KongData, KongPlugin, KongRoute, KongService

Table = dict[str, Any]
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Kong fields that carry no meaning when they hold Kong's default.
_SERVICE_DEFAULTS: Mapping[str, object] = {"write_timeout": 60000, "tls_verify_depth": None}
_ROUTE_DEFAULTS: Mapping[str, object] = {
    "protocols": ["http", "https"],
    "regex_priority": 0,
    "preserve_host": False,
    "https_redirect_status_code": 426,
    "path_handling": "v0",
    "request_buffering": True,
    "response_buffering": True,
    "priority": 0,
}
_ROUTE_WHY: Mapping[str, str] = {
    "protocols": "edgeauth serves HTTPS (and plain HTTP only on http_listen)",
    "preserve_host": "edgeauth always sends the upstream's Host",
    "regex_priority": "edgeauth matches prefixes only, the longest first",
    "headers": "edgeauth matches by host, method and path only",
    "snis": "edgeauth matches by host, method and path only",
    "sources": "edgeauth matches by host, method and path only",
    "destinations": "edgeauth matches by host, method and path only",
    "expression": "edgeauth has no expression routes",
}
_REGEX = re.compile(r"[\[\](){}*+?^$|\\]")
# oauth2 plugin config keys and how they map: same name in [services.oauth2].
_OAUTH2_BOOLS = (
    "mandatory_scope",
    "enable_authorization_code",
    "enable_client_credentials",
    "enable_password_grant",
    "enable_implicit_grant",
    "reuse_refresh_token",
    "hide_credentials",
    "accept_http_if_already_terminated",
    "global_credentials",
)
_OAUTH2_KNOWN = {
    *_OAUTH2_BOOLS,
    "scopes",
    "provision_key",
    "token_expiration",
    "refresh_token_ttl",
    "anonymous",
    "auth_header_name",
    "pkce",
    "realm",
}


@dataclass
class ServicesOut:
    """The `[[services]]` tables to write, what was not carried, and the tokens' services."""

    tables: list[Table] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # one comment per table: its Kong origin
    not_carried: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token_services: dict[str, str] = field(default_factory=dict)
    routes: int = 0


def convert_services(data: KongData) -> ServicesOut:
    out = ServicesOut()
    plugins = _Plugins(data, out)
    for service in data.services:
        routes = [r for r in data.routes if r.service is not None and _is(service, r.service)]
        _service(service, routes, plugins, data.upstreams, out)
    for route in data.routes:
        if route.service is None or not any(_is(s, route.service) for s in data.services):
            out.not_carried.append(f"route {_label(route)}: it has no service to proxy to")
    if any(t.get("oauth2") for t in out.tables):
        out.notes.append(
            "Kong also took access tokens from the query string and form bodies; edgeauth takes"
            " them from the Authorization header only (accept_token_in_query and"
            " accept_token_in_body turn the others on)"
        )
    return out


def _is(entity: KongService | KongRoute, ref: str) -> bool:
    return ref in (entity.id, entity.name)


def _label(entity: KongService | KongRoute | KongPlugin) -> str:
    name = getattr(entity, "name", None)
    return f'"{name}"' + (f" (id {entity.id})" if entity.id else "") if name else f"id {entity.id}"


class _Plugins:
    """The enabled oauth2 plugins by scope; every other plugin is reported as not carried."""

    def __init__(self, data: KongData, out: ServicesOut) -> None:
        self.oauth2: list[KongPlugin] = []
        self.names = _names(data)
        for plugin in data.plugins:
            where = self.scope(plugin)
            if plugin.name != "oauth2":
                out.not_carried.append(
                    f"plugin {plugin.name} ({where}): edgeauth has no plugins beyond OAuth 2.0"
                )
            elif not plugin.enabled:
                out.not_carried.append(
                    f"plugin oauth2 ({where}): disabled in Kong, so it is not carried"
                )
            elif plugin.consumer is not None:
                out.not_carried.append(f"plugin oauth2 ({where}): scoped to a consumer")
            else:
                self.oauth2.append(plugin)

    def for_route(self, service: KongService, route: KongRoute) -> KongPlugin | None:
        """The oauth2 plugin that protects `route` in Kong, if any (Rule 1)."""
        on_route = [p for p in self.oauth2 if p.route is not None and _is(route, p.route)]
        on_service = [
            p
            for p in self.oauth2
            if p.route is None and p.service is not None and _is(service, p.service)
        ]
        on_all = [p for p in self.oauth2 if p.route is None and p.service is None]
        return next(iter([*on_route, *on_service, *on_all]), None)

    def scope(self, plugin: KongPlugin) -> str:
        """Where a plugin applies, by name where its references are ids."""
        parts = [
            f"{what} {self.names.get(ref, ref)}"
            for what, ref in (
                ("service", plugin.service),
                ("route", plugin.route),
                ("consumer", plugin.consumer),
            )
            if ref is not None
        ]
        return ", ".join(parts) or "global"


def _names(data: KongData) -> dict[str, str]:
    """References (ids or names) → quoted names, for messages."""
    named: list[tuple[str | None, str | None]] = [(s.id, s.name) for s in data.services]
    named += [(r.id, r.name) for r in data.routes]
    named += [(c.id, c.username or c.custom_id) for c in data.consumers]
    found = {name: f'"{name}"' for _, name in named if name is not None}
    found.update((ref, f'"{name}"') for ref, name in named if ref is not None and name is not None)
    return found


# one Kong service -----------------------------------------------------------------------------
def _service(
    service: KongService,
    routes: list[KongRoute],
    plugins: _Plugins,
    upstreams: frozenset[str],
    out: ServicesOut,
) -> None:
    label = f"service {_label(service)}"
    why = _refusal(service, routes)
    if why is not None:
        out.not_carried.append(f"{label}: {why}")
        return
    base = _base_table(service, label, upstreams, out)
    groups: dict[int, tuple[KongPlugin | None, list[Table]]] = {}
    for route in routes:
        table = _route(route, out)
        if table is not None:
            plugin = plugins.for_route(service, route)
            groups.setdefault(id(plugin), (plugin, []))[1].append(table)
    if not groups:
        out.not_carried.append(f"{label}: none of its routes can be carried")
        return
    name = service.name or f"kong-service-{(service.id or 'x')[:8]}"
    for n, (plugin, tables) in enumerate(groups.values()):
        own = name if n == 0 else f"{name}-{tables[0]['name']}"
        _emit(service, own, base, tables, (plugin, plugins), out)


def _refusal(service: KongService, routes: list[KongRoute]) -> str | None:
    if not service.enabled:
        return "disabled in Kong"
    if service.protocol not in _DEFAULT_PORTS:
        return f"protocol {service.protocol}: edgeauth proxies HTTP and HTTPS only"
    if not routes:
        return "it has no routes"
    return None


def _emit(
    service: KongService,
    name: str,
    base: Table,
    routes: list[Table],
    protection: tuple[KongPlugin | None, _Plugins],
    out: ServicesOut,
) -> None:
    plugin, plugins = protection
    table: Table = {"name": name, **base, "routes": routes}
    origin = f"Kong service {_label(service)}"
    if plugin is not None:
        table["oauth2"] = _oauth2(plugin, name, out)
        origin += f", oauth2 plugin {plugin.id or ''} ({plugins.scope(plugin)})"
        if service.id is not None:
            first = out.token_services.setdefault(service.id, name)
            if first != name:
                out.notes.append(
                    f"{origin}: its routes have their own oauth2 plugins, so it became several"
                    f" services; its imported tokens are valid on {first} only, not on {name}"
                    " (clients of those routes ask for new tokens)"
                )
    out.tables.append(table)
    out.sources.append(origin)
    out.routes += len(routes)


def _base_table(
    service: KongService, label: str, upstreams: frozenset[str], out: ServicesOut
) -> Table:
    host = f"[{service.host}]" if ":" in service.host else service.host
    port = service.port
    shown_port = f":{port}" if port and port != _DEFAULT_PORTS[service.protocol] else ""
    table: Table = {"url": f"{service.protocol}://{host}{shown_port}{service.path or ''}"}
    if service.connect_timeout_ms:
        table["connect_timeout_seconds"] = service.connect_timeout_ms / 1000
    if service.read_timeout_ms:
        table["read_timeout_seconds"] = service.read_timeout_ms / 1000
    if service.retries is not None:
        table["retries"] = max(0, min(int(service.retries), 10))
    if service.tls_verify is not None:
        table["tls_verify"] = bool(service.tls_verify)
    elif service.protocol == "https":
        out.notes.append(
            f"{label}: edgeauth verifies the upstream's certificate (Kong did not, by"
            " default); set tls_verify = false or ca_file if it is self-signed"
        )
    if service.host in upstreams:
        out.not_carried.append(
            f"{label}: host {service.host} is a Kong upstream (load balancing over targets);"
            " point its url at one address that balances them"
        )
    others = _set_fields(service.others, _SERVICE_DEFAULTS)
    if others:
        out.not_carried.append(f"{label}: {', '.join(sorted(others))} (no equivalent)")
    return table


def _set_fields(others: Mapping[str, object], defaults: Mapping[str, object]) -> list[str]:
    return [k for k, v in others.items() if k not in defaults or defaults[k] != v]


def _route(route: KongRoute, out: ServicesOut) -> Table | None:
    label = f"route {_label(route)}"
    if route.others.get("protocols") and not {"http", "https"} & set(route.others["protocols"]):
        out.not_carried.append(f"{label}: protocols {route.others['protocols']}")
        return None
    paths = []
    for path in route.paths or ("/",):
        if path.startswith("~") or _REGEX.search(path) or not path.startswith("/"):
            out.not_carried.append(f"{label}: path {path!r}: edgeauth matches path prefixes only")
        else:
            paths.append(path)
    if not paths:
        return None
    table: Table = {
        "name": route.name or f"kong-route-{(route.id or 'x')[:8]}",
        "paths": paths,
    }
    if route.hosts:
        table["hosts"] = [host.lower() for host in route.hosts]
    if route.methods:
        table["methods"] = [method.upper() for method in route.methods]
    table["strip_path"] = route.strip_path
    for key in _set_fields(route.others, _ROUTE_DEFAULTS):
        why = _ROUTE_WHY.get(key, "no equivalent")
        out.not_carried.append(f"{label}: {key} = {route.others[key]!r} ({why})")
    return table


def _oauth2(plugin: KongPlugin, service: str, out: ServicesOut) -> Table:
    """[services.oauth2] from the plugin's config, every setting written out (Kong's
    defaults differ from edgeauth's, hide_credentials among them)."""
    config = plugin.config
    table: Table = {}
    if config.get("scopes"):
        table["scopes"] = [str(s) for s in config["scopes"]]
    if config.get("provision_key") is not None:
        table["provision_key"] = str(config["provision_key"])
    for key in ("token_expiration", "refresh_token_ttl"):
        if config.get(key) is not None:
            table[key] = int(config[key])
    for key in _OAUTH2_BOOLS:
        table[key] = config.get(key) is True
    if config.get("pkce") in ("none", "lax", "strict"):
        table["pkce"] = config["pkce"]
    if config.get("anonymous"):
        table["anonymous"] = str(config["anonymous"])
    if config.get("auth_header_name"):
        table["auth_header_name"] = str(config["auth_header_name"]).lower()
    if config.get("realm"):
        table["realm"] = str(config["realm"])
    unknown = sorted(k for k, v in config.items() if k not in _OAUTH2_KNOWN and v is not None)
    if unknown:
        out.not_carried.append(
            f"plugin oauth2 of service {service}: {', '.join(unknown)} (no equivalent)"
        )
    return table
