"""Admin handlers for `/consumers` (design §6): thin, Kong's shapes and status codes.

Rule: a consumer declared in config.toml (tagged models.MANAGED_TAG) is config's: every
change or delete here is a 409 naming it.
"""

from __future__ import annotations

from aiohttp import web

from edgeauth.admin import schemas, views
from edgeauth.admin.http import (
    body_of,
    ctx,
    json,
    no_content,
    offset_of,
    refuse_managed,
    size_of,
    tags_of,
    unique,
)
from edgeauth.errors import Conflict, NotFound
from edgeauth.models import Consumer
from edgeauth.store.base import ConsumerPatch, Store


async def find_consumer(store: Store, key: str) -> Consumer:
    found = await store.get_consumer(key)
    if found is None:
        raise NotFound()
    return found


def unmanaged(consumer: Consumer) -> Consumer:
    refuse_managed("consumer", consumer.username or consumer.id, consumer.tags)
    return consumer


async def list_consumers(request: web.Request) -> web.Response:
    size = size_of(request)
    result = await ctx(request).store.list_consumers(
        tags=tags_of(request), after=offset_of(request), size=size
    )
    return json(views.page(result, views.consumer, request.path, size, request.query))


async def make_consumer(store: Store, given: schemas.ConsumerInput) -> Consumer:
    """Create a checked consumer (the API's POST and PUT, and the console's form)."""
    try:
        return await store.create_consumer(
            given.username,
            given.custom_id,
            given.tags or (),
            id=given.id,
            created_at=given.created_at,
        )
    except Conflict as exc:
        values = {"id": given.id, "username": given.username, "custom_id": given.custom_id}
        raise unique(exc, values) from exc


async def create_consumer(request: web.Request) -> web.Response:
    c = ctx(request)
    given = schemas.consumer(await body_of(request), now=c.clock())
    return json(views.consumer(await make_consumer(c.store, given)), 201)


async def get_consumer(request: web.Request) -> web.Response:
    return json(views.consumer(await find_consumer(ctx(request).store, request.match_info["c"])))


async def _update(store: Store, found: Consumer, patch: ConsumerPatch) -> Consumer:
    try:
        updated = await store.update_consumer(found.id, patch)
    except Conflict as exc:
        values = {"username": patch.get("username"), "custom_id": patch.get("custom_id")}
        raise unique(exc, values) from exc
    if updated is None:
        raise NotFound()
    return updated


async def patch_consumer(request: web.Request) -> web.Response:
    c = ctx(request)
    store = c.store
    found = unmanaged(await find_consumer(store, request.match_info["c"]))
    body = await body_of(request)
    given = schemas.consumer(body, now=c.clock(), current=found, partial=True)
    patch: ConsumerPatch = {}
    if "username" in body:
        patch["username"] = given.username
    if "custom_id" in body:
        patch["custom_id"] = given.custom_id
    if "tags" in body:
        patch["tags"] = given.tags or ()
    return json(views.consumer(await _update(store, found, patch)))


async def put_consumer(request: web.Request) -> web.Response:
    """Kong's upsert: by id if the path is one, else the path is the username; an existing
    consumer is replaced whole (what the body omits is cleared), keeping its id."""
    c = ctx(request)
    store = c.store
    key = request.match_info["c"]
    body = schemas.from_path(await body_of(request), key, "username")
    now = c.clock()
    found = await store.get_consumer(key)
    if found is None:
        given = schemas.consumer(body, now=now)
        return json(views.consumer(await make_consumer(store, given)), 200)
    given = schemas.consumer(body, now=now, current=unmanaged(found))
    patch: ConsumerPatch = {
        "username": given.username,
        "custom_id": given.custom_id,
        "tags": given.tags or (),
    }
    return json(views.consumer(await _update(store, found, patch)))


async def delete_consumer(request: web.Request) -> web.Response:
    store = ctx(request).store
    found = await store.get_consumer(request.match_info["c"])
    if found is not None:
        await store.delete_consumer(unmanaged(found).id)
    return no_content()
