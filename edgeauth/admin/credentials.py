"""Admin handlers for OAuth applications: `/consumers/{c}/oauth2` and `/oauth2` (design §6).

Rule: the client secret is hashed before it is stored and shown in clear only in the
response that created it (generated when not given, as Kong does).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from edgeauth import crypto
from edgeauth.admin import schemas, views
from edgeauth.admin.consumers import find_consumer
from edgeauth.admin.http import (
    body_of,
    ctx,
    json,
    no_content,
    offset_of,
    size_of,
    tags_of,
    unique,
)
from edgeauth.errors import Conflict, NotFound
from edgeauth.models import ClientType, Credential
from edgeauth.store.base import CredentialPatch, NewCredential, Store


async def find_credential(store: Store, key: str, consumer_id: str | None = None) -> Credential:
    """By id or client_id; when `consumer_id` is given it must be that consumer's."""
    found = await store.get_credential(key) if schemas.is_uuid(key) else None
    if found is None:
        found = await store.find_credential(key)
    if found is None or (consumer_id is not None and found.consumer_id != consumer_id):
        raise NotFound()
    return found


async def _hash(secret: str) -> str:
    return await asyncio.to_thread(crypto.hash_secret, secret)


async def new_credential(
    store: Store, consumer_id: str, given: schemas.CredentialInput
) -> tuple[Credential, str | None]:
    """Create an application; returns it with the clear secret to show once (None if public)."""
    client_type = ClientType(given.client_type or "confidential")
    secret = None
    if client_type is ClientType.CONFIDENTIAL:
        secret = given.client_secret or crypto.mint()
    new = NewCredential(
        consumer_id=consumer_id,
        name=given.name or "",
        client_id=given.client_id or crypto.mint(),
        secret_hash=await _hash(secret) if secret else None,
        redirect_uris=given.redirect_uris or (),
        client_type=client_type,
        tags=given.tags or (),
    )
    try:
        return await store.create_credential(new), secret
    except Conflict as exc:
        raise unique(exc, {"client_id": new.client_id}) from exc


async def list_for_consumer(request: web.Request) -> web.Response:
    store = ctx(request).store
    consumer = await find_consumer(store, request.match_info["c"])
    size = size_of(request)
    result = await store.list_credentials(
        consumer_id=consumer.id, tags=tags_of(request), after=offset_of(request), size=size
    )
    return json(views.page(result, views.credential, request.path, size, request.query))


async def list_all(request: web.Request) -> web.Response:
    size = size_of(request)
    result = await ctx(request).store.list_credentials(
        tags=tags_of(request), after=offset_of(request), size=size
    )
    return json(views.page(result, views.credential, request.path, size, request.query))


async def create(request: web.Request) -> web.Response:
    store = ctx(request).store
    consumer = await find_consumer(store, request.match_info["c"])
    made, secret = await new_credential(
        store, consumer.id, schemas.credential(await body_of(request))
    )
    return json(views.credential(made, secret), 201)


async def _owner(request: web.Request) -> str | None:
    key = request.match_info.get("c")
    if key is None:
        return None
    return (await find_consumer(ctx(request).store, key)).id


async def get(request: web.Request) -> web.Response:
    store = ctx(request).store
    found = await find_credential(store, request.match_info["cred"], await _owner(request))
    return json(views.credential(found))


async def _patch_of(body: dict[str, object], given: schemas.CredentialInput) -> CredentialPatch:
    patch: CredentialPatch = {}
    if given.name is not None:
        patch["name"] = given.name
    if given.client_id is not None:
        patch["client_id"] = given.client_id
    if given.client_secret is not None:
        patch["secret_hash"] = await _hash(given.client_secret)
    if given.redirect_uris is not None:
        patch["redirect_uris"] = given.redirect_uris
    if given.client_type is not None:
        patch["client_type"] = ClientType(given.client_type)
        if given.client_type == "public":
            patch["secret_hash"] = None
    if "tags" in body:
        patch["tags"] = given.tags or ()
    return patch


async def patch(request: web.Request) -> web.Response:
    store = ctx(request).store
    found = await find_credential(store, request.match_info["cred"], await _owner(request))
    body = await body_of(request)
    given = schemas.credential(body, partial=True)
    schemas.secret_rules(
        given.client_type or found.client_type.value,
        has_secret=found.secret_hash is not None and given.client_type != "public",
        sends_secret=given.client_secret is not None,
    )
    return await _update(store, found, body, given)


async def _update(
    store: Store, found: Credential, body: dict[str, object], given: schemas.CredentialInput
) -> web.Response:
    try:
        updated = await store.update_credential(found.id, await _patch_of(body, given))
    except Conflict as exc:
        raise unique(exc, {"client_id": given.client_id}) from exc
    if updated is None:
        raise NotFound()
    return json(views.credential(updated, given.client_secret))


async def put(request: web.Request) -> web.Response:
    """Upsert under a consumer: by id, or the path is the client_id."""
    store = ctx(request).store
    consumer = await find_consumer(store, request.match_info["c"])
    key = request.match_info["cred"]
    body = dict(await body_of(request))
    if not schemas.is_uuid(key):
        body.setdefault("client_id", key)
    given = schemas.credential(body)
    try:
        found = await find_credential(store, key, consumer.id)
    except NotFound:
        made, secret = await new_credential(store, consumer.id, given)
        return json(views.credential(made, secret), 200)
    schemas.secret_rules(
        given.client_type or found.client_type.value,
        has_secret=found.secret_hash is not None,
        sends_secret=given.client_secret is not None,
    )
    return await _update(store, found, body, given)


async def delete(request: web.Request) -> web.Response:
    store = ctx(request).store
    try:
        found = await find_credential(store, request.match_info["cred"], await _owner(request))
    except NotFound:
        return no_content()
    await store.delete_credential(found.id)
    return no_content()
