"""What every admin handler shares: context, the guard middleware, bodies, paging params.

Rule 1: every request must carry the admin token (`Authorization: Bearer` or
`Kong-Admin-Token`), compared in constant time; anything else is 401. The console (admin/ui/,
mounted when `[admin] ui = true`) is the one exception: it is signed in to with that same
token, and its own guard checks the session cookie it signs.
Rule 2: errors are Kong's bodies; no exception reaches the client as a stack trace.
Rule 3: text that is not UTF-8 (in the path, the query or a form body, once percent-decoded)
is a 400, never guessed at: aiohttp would keep such an escape as literal text, so a PUT to
`/consumers/%ED%A0%80` named a consumer "%ED%A0%80".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from aiohttp import web

from edgeauth import rendering
from edgeauth.admin.auth import authorized
from edgeauth.audit import AuditLog
from edgeauth.config import Settings
from edgeauth.errors import (
    AdminError,
    AdminUnauthorized,
    BadRequest,
    Conflict,
    EdgeAuthError,
    PayloadTooLarge,
    StoreError,
    StoreUnavailable,
    UniqueViolation,
)
from edgeauth.models import MANAGED_TAG
from edgeauth.store.base import Store, TagFilter

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class AdminContext:
    """What the handlers share. `clock` is the gateway's wall clock, read once per handler;
    `started` is read from it when the context is made."""

    settings: Settings
    store: Store
    token: str
    clock: Callable[[], float]
    stats: Callable[[], dict[str, Any]] = dict
    audit: AuditLog = field(default_factory=lambda: AuditLog("off"))
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()


CONTEXT = web.AppKey("admin", AdminContext)
# The id of what a console write created: the console answers with a page, not the entity's
# JSON, so it hands the id to the audit trail here.
CREATED = web.RequestKey("created", str)


def ctx(request: web.Request) -> AdminContext:
    return request.app[CONTEXT]


def json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication first, then the one place that turns errors into Kong's bodies."""
    if for_console(request):
        return await handler(request)
    try:
        if not authorized(request.headers, ctx(request).token):
            raise AdminUnauthorized()
        check_target(request.raw_path)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return json({"message": "Not found"}, 404)
        if exc.status == 405:
            return json({"message": "Method not allowed"}, 405)
        raise
    except AdminError as exc:
        return json(rendering.kong_body(exc), exc.status)
    except Conflict as exc:
        return json(rendering.kong_body(exc), 409)
    except StoreUnavailable as exc:
        return json(rendering.kong_body(exc), 503)
    except StoreError as exc:  # the store refused the caller's input (e.g. a bad cursor)
        return json(rendering.kong_body(exc), 400)
    except EdgeAuthError as exc:
        log.warning("admin %s %s failed: %s", request.method, _route_of(request), exc)
        return json(rendering.kong_body(exc), exc.status)
    except Exception:
        log.exception("admin %s %s failed", request.method, _route_of(request))
        return json(rendering.kong_body(EdgeAuthError()), 500)


def for_console(request: web.Request) -> bool:
    """Whether the console answers this request: its sub-application is the only one."""
    return len(request.match_info.apps) > 1


def _route_of(request: web.Request) -> str:
    """The route pattern, never the path: a path may hold a token (`/oauth2_tokens/{t}`)."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"


def check_target(raw_path: str) -> None:
    """Path and query, percent-decoded, must be UTF-8 (Rule 3; the console's guard too)."""
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The request target is not valid UTF-8 once percent-decoded") from exc


async def raw_body(request: web.Request, cap: int = MAX_BODY) -> bytes:
    """The whole body, refused (413) past `cap` bytes without holding more than that."""
    if request.content_length is not None and request.content_length > cap:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def body_of(request: web.Request) -> dict[str, Any]:
    """JSON or form body, at most 64 KiB; malformed JSON is a 400 with a message."""
    raw = await raw_body(request)
    if not raw.strip():
        return {}
    if request.content_type == "application/x-www-form-urlencoded":
        return _form(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Cannot parse JSON body: {exc.args[0].split(':')[0]}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("Cannot parse JSON body: expected an object")
    return doc


def _form(raw: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("Cannot parse form body: not valid UTF-8") from exc
    body: dict[str, Any] = {}
    for name, value in pairs:
        key = name.removesuffix("[]")
        if key in body or name.endswith("[]"):
            existing = body.get(key, [])
            body[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            body[key] = value
    return body


def size_of(request: web.Request) -> int:
    raw = request.query.get("size", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise BadRequest("size must be an integer between 1 and 1000")
    return int(raw)


def tags_of(request: web.Request) -> TagFilter | None:
    raw = request.query.get("tags")
    if not raw:
        return None
    if "," in raw and "/" in raw:
        raise BadRequest("invalid tags filter: mix of ',' and '/'")
    if "/" in raw:
        return TagFilter(tuple(raw.split("/")), any=True)
    return TagFilter(tuple(raw.split(",")))


def offset_of(request: web.Request) -> str | None:
    return request.query.get("offset") or None


class Managed(AdminError):
    """409: config.toml declares the entity, so a change here would be undone (or fought
    over) at the next reload."""

    status = 409


def refuse_managed(kind: str, name: str, tags: tuple[str, ...]) -> None:
    if MANAGED_TAG in tags:
        raise Managed(f"{kind} '{name}' is managed by config.toml: change it there and reload")


def unique(exc: Conflict, values: dict[str, str | None]) -> UniqueViolation:
    """Kong's 409 naming the column the store's Conflict names, with the value given for it."""
    return UniqueViolation(exc.column, values.get(exc.column) or "")
