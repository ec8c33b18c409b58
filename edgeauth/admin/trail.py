"""The admin audit trail: one line (edgeauth/audit.py) per admin write, whatever its outcome,
and per refused admin authentication, whatever its method.

Rule 1: the entity is read from the route pattern: the last collection it names (consumers,
oauth2, oauth2_tokens...) and the path key right after it; a creation's id is the created
entity's "id" in the response, the only field of a response ever read here.
Rule 2: the path is never logged as sent, only rebuilt from text the route table defines.
A matched route is its pattern with the keys filled in; a key is shown as sent only when an
authenticated write succeeded on an entity it names (a DELETE of a consumer is looked up
first: Kong answers 204 even when there is none), every other key as `sha256:` and the
first 16 hex digits of its digest, in the path and as the entity id. A path no route
matched keeps its leading segments that the route table spells out (`/oauth2_tokens`, not
`/OAUTH2_TOKENS` nor `/oauth2_tokens%2F...`), the rest as one digest. So a token, a secret
or a typo, sent by anyone, authenticated or not, never reaches the line in clear.
Rule 3: tokens are addressed by id or by value, so the key after `oauth2_tokens` (`tokens`
in the console's paths) is logged
as the token's id when a successful write found it, else as its digest, in the path and as
the entity id. A refused request never causes a store lookup.
Rule 4: every field of a line is bounded (text a client chose goes through exchange.clip()
and is made valid UTF-8), so a line stays under 2 KiB, well under PIPE_BUF (audit.py Rule 4).
Rule 5: 401 is the admin API's answer to a refused authentication and to nothing else (the
console's too: a wrong admin token at its sign-in, a form posted without a session):
outcome "refused"; 2xx and 3xx "ok"; anything else "error". A request the client abandoned
before its answer is logged with status 499 (nginx's convention).
Rule 6: the console's writes (admin/ui/) are logged as the API's are, its paths read by the
same rules, with `client` "console"; the id of what it created is the one it hands over in
the request (http.CREATED), as it answers with a page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import takewhile
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from edgeauth import crypto
from edgeauth.admin.auth import authorized
from edgeauth.admin.http import CREATED, Handler, ctx, for_console
from edgeauth.admin.tokens import find_token
from edgeauth.errors import NotFound, StoreError
from edgeauth.exchange import clip

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
COLLECTIONS = {
    "consumers": "consumer",
    "oauth2": "oauth2_credential",
    "oauth2_tokens": "oauth2_token",
    "tokens": "oauth2_token",  # the console's
    "services": "service",
    "routes": "route",
    "plugins": "plugin",
    "config": "config",
}
TOKENS = frozenset({"oauth2_tokens", "tokens"})
WORKSPACE = "default"  # Kong's one workspace: the `/{ws:default}` prefix of app.py
CLI_AGENT = "edgeauth-cli/"
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
    named = True
    try:
        named = await _names_an_entity(request)
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.method in WRITES or status == 401:
            await _record(request, status, response, named)


async def _names_an_entity(request: web.Request) -> bool:
    """False for an authorized DELETE of a consumer that does not exist: Kong answers 204
    either way, and only this tells a consumer's name from any text (Rule 2)."""
    entity = entity_of(request)
    if request.method != "DELETE" or entity.kind != "consumer" or entity.key is None:
        return True
    if not authorized(request.headers, ctx(request).token):
        return True  # refused: no store lookup, and the key is not shown anyway
    try:
        return await ctx(request).store.get_consumer(entity.key) is not None
    except StoreError:
        return False


async def _record(
    request: web.Request, status: int, response: web.StreamResponse | None, named: bool
) -> None:
    entity = entity_of(request)
    key = entity.key
    succeeded = named and 200 <= status < 400  # only then is a key shown as sent (Rule 2)
    token_id = entity_id = None
    if entity.kind == "oauth2_token" and key is not None:
        if 200 <= status < 400:
            token_id = _created_id(response) or await _token_id(request, key)
        entity_id = token_id or digest_label(key)
    elif key is not None:
        entity_id = key if succeeded else digest_label(key)
    elif 200 <= status < 400:
        entity_id = _created_id(response) or request.get(CREATED)
    refused = status == 401
    agent = _text(request.headers.get("User-Agent", ""))
    fields = {
        "peer": _text(request.remote),
        "method": _text(request.method),
        "path": logged_path(request, succeeded, token_id),
        "entity": entity.kind,
        "entity_id": _text(entity_id),
        "status": status,
        "outcome": "refused" if refused else "ok" if status < 400 else "error",
        "user_agent": agent or None,
        "client": _client(request, agent),
    }
    msg = "admin authentication refused" if refused else "admin write"
    ctx(request).audit.record(msg, fields)


def _client(request: web.Request, agent: str | None) -> str:
    if for_console(request):
        return "console"
    return "cli" if agent and agent.startswith(CLI_AGENT) else "other"


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


def logged_path(request: web.Request, succeeded: bool, token_id: str | None) -> str:
    """The path rebuilt from the route table (Rule 2), never the query; at most CLIP_CHARS
    characters, all ASCII."""
    names = _literal_names(request.app)
    resource = request.match_info.route.resource
    if resource is None:
        return _unrouted(request.rel_url.raw_path, names)
    segments = resource.canonical.split("/")
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            value = request.match_info[segment[1:-1]]
            if segments[i - 1] in TOKENS:
                segments[i] = token_id or digest_label(value)
            elif succeeded or value in names:
                segments[i] = quote(value, safe="@:", errors="backslashreplace")
            else:
                segments[i] = digest_label(value)
    return clip("/".join(segments)) or ""


def _unrouted(raw_path: str, names: frozenset[str]) -> str:
    """The leading segments the route table names literally, then the rest as one digest."""
    segments = raw_path.split("/")[1:]
    kept = list(takewhile(names.__contains__, segments))
    rest = "/".join(segments[len(kept) :])
    return clip("/" + "/".join([*kept, digest_label(rest)] if rest else kept)) or ""


def _literal_names(app: web.Application) -> frozenset[str]:
    """Every segment some route pattern spells out: the only path text a client cannot
    choose."""
    names = {WORKSPACE}
    for resource in app.router.resources():
        names.update(s for s in resource.canonical.split("/") if s and not s.startswith("{"))
    return frozenset(names)


def digest_label(value: str) -> str:
    """How a token value (or what may be one) is named in the log: its digest's prefix."""
    return "sha256:" + crypto.digest(value).hex()[:16]


def _text(value: str | None) -> str | None:
    """Client text for a field (Rule 4): lone surrogates (bytes that were not UTF-8, which
    orjson refuses) escaped as `\\udcNN`, then clipped."""
    if value is None:
        return None
    return clip(value.encode("utf-8", "backslashreplace").decode("utf-8"))


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
