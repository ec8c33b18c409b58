"""The admin audit trail: one line (edgeauth/audit.py) per admin write, whatever its outcome,
and per refused admin authentication, whatever its method.

Rule 1: the entity is read from the route pattern: the last collection it names (consumers,
oauth2, oauth2_tokens...) and the path key right after it; a creation's id is the created
entity's "id" in the response, the only field of a response ever read here.
Rule 2: tokens are addressed by id or by value, so every path segment after `oauth2_tokens`
is logged as the token's id when a successful write found it, else as `sha256:` and the
first 16 hex digits of the segment's digest: never as it was sent. A refused request never
causes a store lookup.
Rule 3: 401 is the admin API's answer to a refused authentication and to nothing else:
outcome "refused"; 2xx and 3xx "ok"; anything else "error". A request the client abandoned
before its answer is logged with status 499 (nginx's convention).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from edgeauth import crypto
from edgeauth.admin.http import Handler, ctx
from edgeauth.admin.tokens import find_token
from edgeauth.errors import NotFound, StoreError

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
COLLECTIONS = {
    "consumers": "consumer",
    "oauth2": "oauth2_credential",
    "oauth2_tokens": "oauth2_token",
    "services": "service",
    "routes": "route",
    "plugins": "plugin",
    "config": "config",
}
TOKENS = "oauth2_tokens"
CLI_AGENT = "edgeauth-cli/"
MAX_AGENT = 256
ABANDONED = 499


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str | None = None
    key: str | None = None  # as the path names it, decoded


@web.middleware
async def audit_trail(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: it sees the status the guard (http.py) settled on."""
    response: web.StreamResponse | None = None
    status = ABANDONED
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.method in WRITES or status == 401:
            await _record(request, status, response)


async def _record(request: web.Request, status: int, response: web.StreamResponse | None) -> None:
    entity = entity_of(request)
    token_id = None
    if entity.kind == "oauth2_token" and entity.key is not None and 200 <= status < 300:
        token_id = _created_id(response) or await _token_id(request, entity.key)
    entity_id = entity.key
    if entity.kind == "oauth2_token" and entity.key is not None:
        entity_id = token_id or digest_label(entity.key)
    elif entity_id is None and 200 <= status < 300:
        entity_id = _created_id(response)
    refused = status == 401
    agent = request.headers.get("User-Agent", "")[:MAX_AGENT]
    fields = {
        "peer": request.remote,
        "method": request.method,
        "path": logged_path(request.rel_url.raw_path, token_id),
        "entity": entity.kind,
        "entity_id": entity_id,
        "status": status,
        "outcome": "refused" if refused else "ok" if status < 400 else "error",
        "user_agent": agent or None,
        "client": "cli" if agent.startswith(CLI_AGENT) else "other",
    }
    msg = "admin authentication refused" if refused else "admin write"
    ctx(request).audit.record(msg, fields)


def entity_of(request: web.Request) -> Entity:
    """Rule 1: the last collection of the matched pattern, and the key that follows it."""
    resource = request.match_info.route.resource
    if resource is None:
        return Entity()
    kind = key = None
    expect_key = False
    for segment in resource.canonical.split("/"):
        if segment in COLLECTIONS:
            kind, key, expect_key = COLLECTIONS[segment], None, True
            continue
        if expect_key and segment.startswith("{"):
            key = request.match_info.get(segment[1:-1])
        expect_key = False
    return Entity(kind, key)


def logged_path(raw_path: str, token_id: str | None) -> str:
    """The path as sent (never the query), each segment after `oauth2_tokens` replaced (Rule 2)."""
    parts = raw_path.split("/")
    after_tokens = False
    for i, part in enumerate(parts):
        if after_tokens and part:
            parts[i] = token_id or digest_label(unquote(part))
            token_id = None  # the id names the first segment only
        elif unquote(part) == TOKENS:
            after_tokens = True
    return "/".join(parts)


def digest_label(value: str) -> str:
    """How a token value (or what may be one) is named in the log: its digest's prefix."""
    return "sha256:" + crypto.digest(value).hex()[:16]


def _created_id(response: web.StreamResponse | None) -> str | None:
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    if not isinstance(response.body, bytes):
        return None
    try:
        doc: Any = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    found = doc.get("id") if isinstance(doc, dict) else None
    return found if isinstance(found, str) else None


async def _token_id(request: web.Request, key: str) -> str | None:
    """The id of the token a successful write addressed by `key` (id or value): a revoked
    token's row stays, so a DELETE by value still finds it afterwards."""
    try:
        return (await find_token(ctx(request).store, key)).token.id
    except NotFound:
        return None
    except StoreError as exc:
        log.warning("audit: cannot look up the token of %s: %s", request.method, exc)
        return None
