"""What config.toml declares, through the admin API: services, routes and their oauth2
plugins in Kong's shapes, the root (`GET /`), and Kong's DB-less verb `POST /config`.

Rule 1: services, routes and plugins have one owner, config.toml. Reads answer in Kong's
shapes (ids are the names: the file has no other ids); writes answer 405 with `Allow: GET` and
how to change them, so that no tool believes a change it made took effect.
Rule 2: nothing secret is shown: provision keys are redacted, the store's DSN never appears.
Rule 3: POST /config checks the whole new file first (every problem in one 400, nothing
written), then replaces the file this process was started with at once (its mode kept, 0600
when new) and sends SIGHUP to the supervisor, which reloads as for `systemctl reload`. The 201
means written and reload asked for: the reload's outcome is in the log, as for SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import tempfile
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from edgeauth import __version__
from edgeauth.admin.http import ctx, json, raw_body
from edgeauth.bootstrap import reload_problems
from edgeauth.bus import supervisor_pid
from edgeauth.config import OAuth2Settings, RouteSettings, ServiceSettings, Settings, parse_toml
from edgeauth.errors import BadRequest, ConfigError, NotFound

log = logging.getLogger(__name__)

Json = dict[str, Any]
REDACTED = "<redacted>"
OAUTH2_PRIORITY = 1004  # Kong's oauth2 plugin, as GET / lists what the server offers
MAX_CONFIG_BYTES = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


# views (pure) ---------------------------------------------------------------------------------
def protocols(settings: Settings) -> list[str]:
    """What clients may use on a route: TLS always, plain HTTP with `http_listen`."""
    return ["http", "https"] if settings.server.http_listen else ["https"]


def service_view(s: ServiceSettings) -> Json:
    """Kong's service, plus `protected` (whether a token is required)."""
    url = urlsplit(s.url)
    return {
        "id": s.name,
        "name": s.name,
        "url": s.url,
        "protocol": url.scheme,
        "host": url.hostname,
        "port": url.port or _DEFAULT_PORTS[url.scheme],
        "path": url.path or None,
        "protected": s.oauth2 is not None,
        "connect_timeout": int(s.connect_timeout_seconds * 1000),
        "read_timeout": int(s.read_timeout_seconds * 1000),
        "retries": s.retries,
        "tls_verify": s.tls_verify,
        "enabled": True,
        "tags": None,
    }


def route_view(s: ServiceSettings, r: RouteSettings, on: list[str]) -> Json:
    """Kong's route, plus edgeauth's `required_scopes`."""
    return {
        "id": r.name,
        "name": r.name,
        "paths": list(r.paths),
        "hosts": list(r.hosts) or None,
        "methods": list(r.methods) or None,
        "strip_path": r.strip_path,
        "preserve_host": False,
        "protocols": on,
        "required_scopes": list(r.required_scopes) or None,
        "service": {"id": s.name},
        "tags": None,
    }


def plugin_id(service: str) -> str:
    """A stable UUID per service's oauth2 plugin: the same on every node and restart."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeauth:plugins/oauth2/{service}"))


def plugin_view(s: ServiceSettings, oauth2: OAuth2Settings, on: list[str]) -> Json:
    """Kong's plugin shape for a service's `[services.oauth2]` (Rule 2)."""
    config: Json = {}
    for f in fields(oauth2):
        value = getattr(oauth2, f.name)
        if isinstance(value, tuple):
            value = list(value) or None
        config[f.name] = str(value) if isinstance(value, Path) else value
    config["provision_key"] = REDACTED
    return {
        "id": plugin_id(s.name),
        "name": "oauth2",
        "service": {"id": s.name},
        "route": None,
        "consumer": None,
        "config": config,
        "enabled": True,
        "protocols": on,
        "tags": None,
    }


def plugins_of(settings: Settings, services: tuple[ServiceSettings, ...]) -> list[Json]:
    on = protocols(settings)
    return [plugin_view(s, s.oauth2, on) for s in services if s.oauth2 is not None]


def root_view(settings: Settings, hostname: str) -> Json:
    """Kong's `GET /` where it fits: what tools probe first (Rule 2: no secrets)."""
    server, admin = settings.server, settings.admin
    tls_admin = " ssl" if admin.tls_cert_file is not None else ""
    enabled = ["oauth2"] if any(s.oauth2 is not None for s in settings.services) else []
    return {
        "tagline": "Welcome to edgeauth",
        "version": __version__,
        "hostname": hostname,
        "node_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeauth://{hostname}{settings.source}")),
        "plugins": {
            "available_on_server": {
                "oauth2": {"version": __version__, "priority": OAUTH2_PRIORITY}
            },
            "enabled_in_cluster": enabled,
        },
        "configuration": {
            "database": settings.store.backend,
            "declarative_config": str(settings.source),
            "proxy_listen": [f"{a} ssl" for a in server.listen]
            + [str(a) for a in server.http_listen],
            "admin_listen": [f"{admin.listen}{tls_admin}"],
            "workers": server.workers,
        },
    }


def _page(data: list[Json]) -> Json:
    return {"data": data, "next": None}


# reads ----------------------------------------------------------------------------------------
def _settings(request: web.Request) -> Settings:
    return ctx(request).settings


def _service(request: web.Request) -> ServiceSettings:
    name = request.match_info["s"]
    for s in _settings(request).services:
        if s.name == name:
            return s
    raise NotFound()


async def root(request: web.Request) -> web.Response:
    return json(root_view(_settings(request), socket.gethostname()))


async def list_services(request: web.Request) -> web.Response:
    return json(_page([service_view(s) for s in _settings(request).services]))


async def get_service(request: web.Request) -> web.Response:
    return json(service_view(_service(request)))


async def list_routes(request: web.Request) -> web.Response:
    settings = _settings(request)
    on = protocols(settings)
    return json(_page([route_view(s, r, on) for s in settings.services for r in s.routes]))


async def service_routes(request: web.Request) -> web.Response:
    s, on = _service(request), protocols(_settings(request))
    return json(_page([route_view(s, r, on) for r in s.routes]))


async def get_route(request: web.Request) -> web.Response:
    settings = _settings(request)
    name = request.match_info["r"]
    for s in settings.services:
        for r in s.routes:
            if r.name == name:
                return json(route_view(s, r, protocols(settings)))
    raise NotFound()


async def list_plugins(request: web.Request) -> web.Response:
    settings = _settings(request)
    return json(_page(plugins_of(settings, settings.services)))


async def service_plugins(request: web.Request) -> web.Response:
    return json(_page(plugins_of(_settings(request), (_service(request),))))


async def get_plugin(request: web.Request) -> web.Response:
    settings = _settings(request)
    for plugin in plugins_of(settings, settings.services):
        if plugin["id"] == request.match_info["p"]:
            return json(plugin)
    raise NotFound()


async def read_only(request: web.Request) -> web.Response:
    """Rule 1: a write to what config.toml declares."""
    message = (
        f"services, routes and plugins are declared in {_settings(request).source}: edit it,"
        " then reload: `systemctl reload edgeauth`, SIGHUP to the edgeauth supervisor, or"
        " POST /config with the whole new file"
    )
    response = json({"message": message}, 405)
    response.headers["Allow"] = "GET"
    return response


# POST /config ---------------------------------------------------------------------------------
async def post_config(request: web.Request) -> web.Response:
    """Rule 3."""
    running = _settings(request)
    if not running.admin.allow_config_post:
        message = (
            "POST /config is off: set [admin] allow_config_post = true in config.toml to let"
            " the admin token rewrite it"
        )
        return json({"message": message}, 403)
    raw = await _body(request)
    problems = await asyncio.to_thread(_problems, raw, running)
    if problems:
        return json(_invalid(problems), 400)
    supervisor = supervisor_pid()
    if supervisor is None:
        message = "no edgeauth supervisor runs this admin API, so nothing would reload it"
        return json({"message": f"{message}: nothing was written"}, 503)
    try:
        await asyncio.to_thread(write_whole, running.source, raw)
    except OSError as exc:
        message = f"cannot write {running.source}: {exc.strerror or exc}: nothing was changed"
        return json({"message": message}, 500)
    log.info(
        "admin API wrote a new config file; reloading",
        extra={"fields": {"file": str(running.source)}},
    )
    os.kill(supervisor, signal.SIGHUP)
    message = "written; the supervisor reloads it as on SIGHUP and logs the outcome"
    return json({"message": message, "config_file": str(running.source)}, 201)


async def _body(request: web.Request) -> bytes:
    """The new config.toml: the whole body, at most MAX_CONFIG_BYTES."""
    raw = await raw_body(request, MAX_CONFIG_BYTES)
    if not raw.strip():
        raise BadRequest("The body must be the new config.toml (curl --data-binary @config.toml)")
    return raw


def _problems(raw: bytes, running: Settings) -> list[str]:
    """Everything that would make the supervisor refuse the file, found at once."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"{running.source.name}: TOML syntax error: {exc}"]
    try:
        new = parse_toml(text, source=running.source, environ=os.environ)
    except ConfigError as exc:
        return list(exc.problems)
    return reload_problems(running, new)


def _invalid(problems: list[str]) -> Json:
    """Kong's answer to a bad declarative config, with edgeauth's problem lines."""
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return {
        "code": 14,
        "name": "invalid declarative configuration",
        "message": f"declarative config is invalid ({count}); nothing was written",
        "problems": problems,
    }


def write_whole(path: Path, data: bytes) -> None:
    """Replace the file in one rename, so a reader (the supervisor) sees the old file or the new
    one, never a mix; its mode is kept (0600 for a new file). A symlink's target is replaced."""
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
