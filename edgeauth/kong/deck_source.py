"""Read a decK dump or Kong declarative file (kong.yml, `_format_version: "3.x"`), YAML or JSON.

Entities may be nested (a service's routes and plugins, a consumer's oauth2_credentials and
plugins) or top-level with a reference to their parent by id or name; both are flattened here.
Such files hold no tokens. Anything that is not a mapping where one is expected is a
SourceError naming where, never a half-read import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from edgeauth.kong.model import (
    MAPPED_ROUTE_FIELDS,
    MAPPED_SERVICE_FIELDS,
    KongConsumer,
    KongCredential,
    KongData,
    KongPlugin,
    KongRoute,
    KongService,
    SourceError,
    not_read,
    unmapped,
)

Doc = Mapping[str, Any]
_READ = {"services", "routes", "consumers", "plugins", "oauth2_credentials"}
_CONSUMER_READ = {"oauth2_credentials", "plugins"}
_SERVICE_FIELDS = MAPPED_SERVICE_FIELDS | {"url", "routes", "plugins"}
_ROUTE_FIELDS = MAPPED_ROUTE_FIELDS | {"service", "plugins"}


def read_deck(path: Path) -> KongData:
    """The entities of the decK / kong.yml file at `path`."""
    doc = _load(path)
    version = str(doc.get("_format_version", ""))
    if not version.startswith("3."):
        raise SourceError(
            f"{path.name}: _format_version is {version or 'missing'}; a decK dump or kong.yml"
            ' of format 3.x (Kong 3) is needed: `deck gateway dump` writes "3.0"'
        )
    services, routes, plugins = _services(doc)
    consumers, credentials, consumer_plugins = _consumers(doc)
    return KongData(
        source="deck",
        consumers=tuple(consumers),
        credentials=tuple(credentials),
        services=tuple(services),
        routes=tuple(routes),
        plugins=tuple([*plugins, *consumer_plugins]),
        upstreams=frozenset(str(u.get("name")) for u in _items(doc, "upstreams")),
        unread=_unread(doc),
    )


def _unread(doc: Doc) -> tuple[str, ...]:
    """The entities of the file this import has no use for, counted by kind."""
    found: Counter[str] = Counter()
    for key, value in doc.items():
        if key not in _READ and not key.startswith("_") and isinstance(value, list):
            found[key] += len(value)
    for consumer in _items(doc, "consumers"):
        for key, value in consumer.items():
            if key not in _CONSUMER_READ and isinstance(value, list) and key != "tags":
                found[key] += len(value)
    return tuple(not_read(key, n) for key, n in found.items() if n)


def _load(path: Path) -> Doc:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = orjson.loads(text) if text.lstrip().startswith(b"{") else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path.name}: not YAML or JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SourceError(f"{path.name}: the top level is not a mapping")
    return doc


def _items(doc: Doc, key: str, where: str = "") -> Iterator[Doc]:
    """The mappings listed under `key`; anything else is a SourceError."""
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise SourceError(f"{where}{key}: expected a list")
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise SourceError(f"{where}{key}[{n}]: expected a mapping")
        yield item


def _ref(value: Any) -> str | None:
    """A reference to another entity: its id or name, as a string or {id:} / {name:}."""
    if isinstance(value, dict):
        value = value.get("id") or value.get("name") or value.get("username")
    return None if value is None else str(value)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _created(item: Doc) -> int | None:
    value = item.get("created_at")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# services, routes, plugins ------------------------------------------------------------------
def _services(doc: Doc) -> tuple[list[KongService], list[KongRoute], list[KongPlugin]]:
    services: list[KongService] = []
    routes: list[KongRoute] = []
    plugins: list[KongPlugin] = []
    for n, item in enumerate(_items(doc, "services")):
        where = f"services[{n}]."
        service = _service(item)
        services.append(service)
        ref = service.id or service.name
        for route_item in _items(item, "routes", where):
            route = _route(route_item, ref)
            routes.append(route)
            for plugin in _items(route_item, "plugins", f"{where}routes."):
                plugins.append(_plugin(plugin, route=route.id or route.name))
        for plugin in _items(item, "plugins", where):
            plugins.append(_plugin(plugin, service=ref))
    for n, item in enumerate(_items(doc, "routes")):
        route = _route(item, _ref(item.get("service")))
        routes.append(route)
        for plugin in _items(item, "plugins", f"routes[{n}]."):
            plugins.append(_plugin(plugin, route=route.id or route.name))
    plugins.extend(_plugin(item) for item in _items(doc, "plugins"))
    return services, routes, plugins


def _service(item: Doc) -> KongService:
    protocol, host, port, path = _address(item)
    return KongService(
        id=_ref(item.get("id")),
        name=item.get("name"),
        protocol=protocol,
        host=host,
        port=port,
        path=path,
        connect_timeout_ms=item.get("connect_timeout"),
        read_timeout_ms=item.get("read_timeout"),
        retries=item.get("retries"),
        tls_verify=item.get("tls_verify"),
        enabled=item.get("enabled") is not False,
        others=unmapped(item, _SERVICE_FIELDS),
    )


def _address(item: Doc) -> tuple[str, str, int | None, str | None]:
    """(protocol, host, port, path) from `url` (Kong's shorthand) or the separate fields."""
    url = item.get("url")
    if isinstance(url, str) and url:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise SourceError(f"service url {url!r}: {exc}") from exc
        return parts.scheme or "http", parts.hostname or "", port, parts.path or None
    protocol = str(item.get("protocol") or "http")
    port = item.get("port")
    return protocol, str(item.get("host") or ""), port, item.get("path")


def _route(item: Doc, service: str | None) -> KongRoute:
    return KongRoute(
        id=_ref(item.get("id")),
        name=item.get("name"),
        service=service,
        paths=_strings(item.get("paths")),
        hosts=_strings(item.get("hosts")),
        methods=_strings(item.get("methods")),
        strip_path=item.get("strip_path") is not False,
        others=unmapped(item, _ROUTE_FIELDS),
    )


def _plugin(
    item: Doc, *, service: str | None = None, route: str | None = None, consumer: str | None = None
) -> KongPlugin:
    config = item.get("config")
    return KongPlugin(
        id=_ref(item.get("id")),
        name=str(item.get("name")),
        config=config if isinstance(config, dict) else {},
        enabled=item.get("enabled") is not False,
        service=service or _ref(item.get("service")),
        route=route or _ref(item.get("route")),
        consumer=consumer or _ref(item.get("consumer")),
    )


# consumers and credentials ------------------------------------------------------------------
def _consumers(doc: Doc) -> tuple[list[KongConsumer], list[KongCredential], list[KongPlugin]]:
    consumers: list[KongConsumer] = []
    credentials: list[KongCredential] = []
    plugins: list[KongPlugin] = []
    for n, item in enumerate(_items(doc, "consumers")):
        consumer = KongConsumer(
            id=_ref(item.get("id")),
            username=item.get("username"),
            custom_id=item.get("custom_id"),
            tags=_strings(item.get("tags")),
            created_at=_created(item),
        )
        consumers.append(consumer)
        ref = consumer.id or consumer.username or consumer.custom_id or ""
        where = f"consumers[{n}]."
        credentials.extend(_credential(c, ref) for c in _items(item, "oauth2_credentials", where))
        plugins.extend(_plugin(p, consumer=ref) for p in _items(item, "plugins", where))
    for item in _items(doc, "oauth2_credentials"):
        credentials.append(_credential(item, _ref(item.get("consumer")) or ""))
    return consumers, credentials, plugins


def _credential(item: Doc, consumer: str) -> KongCredential:
    return KongCredential(
        id=_ref(item.get("id")),
        consumer=consumer,
        name=str(item.get("name") or ""),
        client_id=item.get("client_id"),
        client_secret=item.get("client_secret"),
        hash_secret=item.get("hash_secret") is True,
        redirect_uris=_strings(item.get("redirect_uris")),
        client_type=str(item.get("client_type") or "confidential"),
        tags=_strings(item.get("tags")),
        created_at=_created(item),
    )
