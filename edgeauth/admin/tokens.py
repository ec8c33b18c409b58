"""Admin handlers for `/oauth2_tokens` (design §6): list, import, patch, revoke, bulk revoke.

Rule 1: tokens are looked up by id or by value (the value is hashed, never stored).
Rule 2: DELETE revokes (the row stays, marked revoked, so refresh reuse is still detected)
and answers 204 whether or not the token existed, as Kong does.
Rule 3: a bulk DELETE needs at least one filter: "revoke everything" is never an accident.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from edgeauth import crypto
from edgeauth.admin import schemas, views
from edgeauth.admin.consumers import find_consumer
from edgeauth.admin.credentials import find_credential
from edgeauth.admin.http import AdminContext, body_of, ctx, json, no_content, offset_of, size_of
from edgeauth.config import ServiceSettings
from edgeauth.errors import BadRequest, Conflict, NotFound, UniqueViolation
from edgeauth.models import Credential, TokenRecord, TokenView
from edgeauth.store.base import Store, TokenFilter

FILTERS = ("authenticated_userid", "credential", "consumer", "service", "active")


async def filter_of(request: web.Request) -> TokenFilter | None:
    """The query's filters; None when a referenced credential or consumer does not exist."""
    q = request.query
    store = ctx(request).store
    credential_id = consumer_id = None
    try:
        if "credential" in q:
            credential_id = (await find_credential(store, q["credential"])).id
        if "consumer" in q:
            consumer_id = (await find_consumer(store, q["consumer"])).id
    except NotFound:
        return None
    active = q.get("active")
    if active not in (None, "true", "false"):
        raise BadRequest("active must be true or false")
    return TokenFilter(
        authenticated_userid=q.get("authenticated_userid"),
        credential_id=credential_id,
        consumer_id=consumer_id,
        service=q.get("service"),
        active=None if active is None else active == "true",
    )


async def list_tokens(request: web.Request) -> web.Response:
    size = size_of(request)
    which = await filter_of(request)
    c = ctx(request)
    now = c.clock()
    if which is None:
        return json({"data": [], "next": None})
    result = await c.store.list_tokens(which, now, after=offset_of(request), size=size)
    return json(
        views.page(result, lambda v: views.token(v, now), request.path, size, request.query)
    )


async def revoke_many(request: web.Request) -> web.Response:
    if not any(name in request.query for name in FILTERS):
        raise BadRequest("a bulk revoke needs at least one filter: " + ", ".join(FILTERS))
    which = await filter_of(request)
    if which is None:
        return json({"revoked": 0})
    c = ctx(request)
    return json({"revoked": await c.store.revoke_tokens(which, c.clock())})


async def find_token(store: Store, key: str) -> TokenView:
    found = await store.get_token(key) if schemas.is_uuid(key) else None
    if found is None:
        found = await store.find_token(crypto.digest(key))
    if found is None:
        raise NotFound()
    return found


def _service(c: AdminContext, name: str) -> ServiceSettings | None:
    return next((s for s in c.settings.services if s.name == name), None)


async def _references(
    c: AdminContext, body: dict[str, Any]
) -> tuple[Credential | None, dict[str, object]]:
    """The credential a new token's body names, and the references that name nothing (so
    that they are reported with the body's other problems)."""
    problems: dict[str, object] = {}
    credential = None
    key = schemas.reference(body.get("credential"))
    if key is not None:
        try:
            credential = await find_credential(c.store, key)
        except NotFound:
            problems["credential"] = "does not exist"
    service = schemas.reference(body.get("service"))
    if service is not None and _service(c, service) is None:
        problems["service"] = "does not exist"
    return credential, problems


def _end(created: float, seconds: int) -> float | None:
    """`seconds` after the creation time; 0: never."""
    return created + seconds if seconds > 0 else None


def _capped(end: float | None, ttl: int | None, now: float) -> float | None:
    """`end` cut at the row's time to live (Kong's `ttl`: seconds from now, after which Kong
    deletes the row and with it both tokens)."""
    if ttl is None:
        return end
    return now + ttl if end is None else min(end, now + ttl)


def _lifetime(
    c: AdminContext, given: schemas.TokenInput, now: float
) -> tuple[float, float | None, float | None]:
    """(created_at, expires_at, refresh_expires_at) of a new token. Both halves count from
    its creation (the refresh token by the service's refresh_token_ttl, as ours do) and die
    with Kong's row at the `ttl`."""
    created = now if given.created_at is None else float(given.created_at)
    expires_at = _capped(_end(created, given.expires_in or 0), given.ttl, now)
    if not given.refresh_token:
        return created, expires_at, None
    service = None if given.service is None else _service(c, given.service)
    refresh_ttl = service.oauth2.refresh_token_ttl if service and service.oauth2 else 0
    return created, expires_at, _capped(_end(created, refresh_ttl), given.ttl, now)


def _record(
    c: AdminContext, given: schemas.TokenInput, credential: Credential, access: str, now: float
) -> TokenRecord:
    created, expires_at, refresh_expires_at = _lifetime(c, given, now)
    return TokenRecord(
        id=given.id or str(uuid.uuid4()),
        access_digest=crypto.digest(access),
        refresh_digest=crypto.digest(given.refresh_token) if given.refresh_token else None,
        prefix=crypto.prefix(access),
        credential_id=credential.id,
        service=given.service,
        authenticated_userid=given.authenticated_userid,
        scope=given.scope or "",
        family_id=str(uuid.uuid4()),
        created_at=created,
        expires_at=expires_at,
        refresh_expires_at=refresh_expires_at,
    )


def _clash(exc: Conflict, record: TokenRecord, given: schemas.TokenInput) -> UniqueViolation:
    """Kong's 409 on the field that clashed; a token value only by its prefix."""
    if exc.column == "id":
        return UniqueViolation("id", record.id)
    if exc.column == "refresh_digest" and given.refresh_token:
        return UniqueViolation("refresh_token", crypto.prefix(given.refresh_token) + "...")
    return UniqueViolation("access_token", record.prefix + "...")


async def _import(
    c: AdminContext, body: dict[str, Any], now: float, status: int = 201
) -> web.Response:
    """Import a token by value (a migration from Kong), or mint one when none is given; it
    is checked, made and shown at `now`."""
    credential, problems = await _references(c, body)
    given = schemas.token(body, now=now, found=problems)
    assert credential is not None  # noqa: S101 - the schema requires one that exists
    access = given.access_token or crypto.mint()
    record = _record(c, given, credential, access, now)
    try:
        await c.store.save_token(record)
    except Conflict as exc:
        raise _clash(exc, record, given) from exc
    view = await c.store.get_token(record.id)
    if view is None:
        raise NotFound()
    return json(views.token(view, now, access, given.refresh_token), status)


async def create(request: web.Request) -> web.Response:
    c = ctx(request)
    body = dict(await body_of(request))
    return await _import(c, body, c.clock())


async def get(request: web.Request) -> web.Response:
    c = ctx(request)
    found = await find_token(c.store, request.match_info["t"])
    return json(views.token(found, c.clock()))


def _new_expiry(found: TokenView, given: schemas.TokenInput, now: float) -> float | bool | None:
    """The changed expiry (False: unchanged): `expires_in` counts from the token's creation,
    a `ttl` (PUT) cuts it at now + ttl."""
    t = found.token
    if given.expires_in is None and given.ttl is None:
        return False
    end = t.expires_at if given.expires_in is None else _end(t.created_at, given.expires_in)
    return _capped(end, given.ttl, now)


async def _update(
    c: AdminContext, found: TokenView, given: schemas.TokenInput, now: float
) -> web.Response:
    expires_at = _new_expiry(found, given, now)
    updated = await c.store.update_token(found.token.id, expires_at=expires_at, scope=given.scope)
    if updated is None:
        raise NotFound()
    return json(views.token(updated, now))


async def patch(request: web.Request) -> web.Response:
    c = ctx(request)
    found = await find_token(c.store, request.match_info["t"])
    body = await body_of(request)
    now = c.clock()
    return await _update(c, found, schemas.token_patch(body, now=now), now)


async def put(request: web.Request) -> web.Response:
    """Import by value: the path is the access token (or an existing token's id)."""
    c = ctx(request)
    key = request.match_info["t"]
    body = dict(await body_of(request))
    now = c.clock()
    try:
        found = await find_token(c.store, key)
    except NotFound:
        if schemas.is_uuid(key):
            raise
        body["access_token"] = key
        return await _import(c, body, now, status=200)  # PUT answers 200
    return await _update(c, found, schemas.token(body, now=now, partial=True), now)


async def delete(request: web.Request) -> web.Response:
    c = ctx(request)
    try:
        found = await find_token(c.store, request.match_info["t"])
    except NotFound:
        return no_content()
    await c.store.revoke_token(found.token.id, c.clock())
    return no_content()
