"""Admin handlers for OAuth applications: `/consumers/{c}/oauth2` and `/oauth2` (design §6).

Rule 1: the client secret is hashed before it is stored and shown in clear only in the
response that created it (generated when not given, as Kong does); a Kong hash sent as
`client_secret_hash` is stored as it is.
Rule 2: an application declared in config.toml (tagged models.MANAGED_TAG) is config's: a
change or delete here is a 409. A new application under a consumer config declares is the
admin API's own (untagged): a reload never touches it, and it adds no power the admin API
lacks (it can mint tokens for any application).
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
    refuse_managed,
    size_of,
    tags_of,
    unique,
)
from edgeauth.errors import Conflict, NotFound
from edgeauth.models import ClientType, Consumer, Credential
from edgeauth.store.base import CredentialPatch, NewCredential, Store


async def find_credential(store: Store, key: str, consumer_id: str | None = None) -> Credential:
    """By id or client_id; when `consumer_id` is given it must be that consumer's."""
    found = await store.get_credential(key) if schemas.is_uuid(key) else None
    if found is None:
        found = await store.find_credential(key)
    if found is None or (consumer_id is not None and found.consumer_id != consumer_id):
        raise NotFound()
    return found


def unmanaged_app(credential: Credential) -> Credential:
    refuse_managed("application", credential.client_id, credential.tags)
    return credential


async def _hash(secret: str) -> str:
    return await asyncio.to_thread(crypto.hash_secret, secret)


async def _secret_of(
    given: schemas.CredentialInput, client_type: ClientType, stored: str | None
) -> tuple[str | None, str | None]:
    """(hash to store, clear secret to show once): Kong's hash as given, else the secret's
    (the stored hash kept when the secret is the same, so a repeated PUT revokes nothing),
    else a new secret's."""
    if client_type is ClientType.PUBLIC:
        return None, None
    if given.client_secret_hash is not None:
        return given.client_secret_hash, None
    secret = given.client_secret or crypto.mint()
    if stored is not None and await asyncio.to_thread(crypto.verify_secret, secret, stored):
        return stored, secret
    return await _hash(secret), secret


async def _whole(
    consumer_id: str, given: schemas.CredentialInput, stored: str | None = None
) -> tuple[NewCredential, str | None]:
    """Every field as given or its default, as a create or Kong's PUT has them: a client_id
    or secret not given is generated (Kong's auto fields)."""
    client_type = ClientType(given.client_type or "confidential")
    secret_hash, secret = await _secret_of(given, client_type, stored)
    new = NewCredential(
        consumer_id=consumer_id,
        name=given.name or "",
        client_id=given.client_id or crypto.new_client_id(),
        secret_hash=secret_hash,
        redirect_uris=given.redirect_uris or (),
        client_type=client_type,
        tags=given.tags or (),
        id=given.id,
        created_at=given.created_at,
    )
    return new, secret


async def new_credential(
    store: Store, consumer: Consumer, given: schemas.CredentialInput
) -> tuple[Credential, str | None]:
    """Create an application; returns it with the clear secret to show once (None if public
    or imported by hash)."""
    new, secret = await _whole(consumer.id, given)
    try:
        return await store.create_credential(new), secret
    except Conflict as exc:
        raise unique(exc, {"client_id": new.client_id, "id": new.id}) from exc


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
    c = ctx(request)
    store = c.store
    consumer = await find_consumer(store, request.match_info["c"])
    given = schemas.credential(await body_of(request), now=c.clock())
    made, secret = await new_credential(store, consumer, given)
    return json(views.credential(made, secret), 201)


async def _owner(request: web.Request) -> str | None:
    key = request.match_info.get("c")
    if key is None:
        return None
    return (await find_consumer(ctx(request).store, key)).id


async def _found(request: web.Request) -> Credential:
    """The application the path names (under its consumer for nested paths), or 404."""
    return await find_credential(
        ctx(request).store, request.match_info["cred"], await _owner(request)
    )


async def get(request: web.Request) -> web.Response:
    return json(views.credential(await _found(request)))


async def patch_of(body: dict[str, object], given: schemas.CredentialInput) -> CredentialPatch:
    """The changes a checked PATCH body asks for (a new clear secret hashed here)."""
    patch: CredentialPatch = {}
    if given.name is not None:
        patch["name"] = given.name
    if given.client_id is not None:
        patch["client_id"] = given.client_id
    if given.client_secret is not None:
        patch["secret_hash"] = await _hash(given.client_secret)
    if given.client_secret_hash is not None:
        patch["secret_hash"] = given.client_secret_hash
    if given.redirect_uris is not None:
        patch["redirect_uris"] = given.redirect_uris
    if given.client_type is not None:
        patch["client_type"] = ClientType(given.client_type)
        if given.client_type == "public":
            patch["secret_hash"] = None
    if "tags" in body:
        patch["tags"] = given.tags or ()
    return patch


async def apply_patch(store: Store, found: Credential, patch: CredentialPatch) -> Credential:
    """Change an application (the API's PATCH and PUT, and the console's forms)."""
    try:
        updated = await store.update_credential(found.id, patch)
    except Conflict as exc:
        raise unique(exc, {"client_id": patch.get("client_id")}) from exc
    if updated is None:
        raise NotFound()
    return updated


async def _update(
    store: Store, found: Credential, patch: CredentialPatch, secret: str | None
) -> web.Response:
    return json(views.credential(await apply_patch(store, found, patch), secret))


async def patch(request: web.Request) -> web.Response:
    c = ctx(request)
    found = unmanaged_app(await _found(request))
    body = await body_of(request)
    given = schemas.credential(body, now=c.clock(), current=found, partial=True)
    changes = await patch_of(body, given)
    return await _update(c.store, found, changes, given.client_secret)


async def put(request: web.Request) -> web.Response:
    """Kong's upsert under a consumer, by id or with the path as the client_id: an existing
    application is replaced whole (what the body omits returns to its default), keeping its
    id."""
    c = ctx(request)
    store = c.store
    consumer = await find_consumer(store, request.match_info["c"])
    key = request.match_info["cred"]
    body = schemas.from_path(await body_of(request), key, "client_id")
    now = c.clock()
    try:
        found = await find_credential(store, key, consumer.id)
    except NotFound:
        made, secret = await new_credential(store, consumer, schemas.credential(body, now=now))
        return json(views.credential(made, secret), 200)
    given = schemas.credential(body, now=now, current=unmanaged_app(found))
    return await _replace(store, found, given)


async def _replace(store: Store, found: Credential, given: schemas.CredentialInput) -> web.Response:
    new, secret = await _whole(found.consumer_id, given, found.secret_hash)
    replacement: CredentialPatch = {
        "name": new.name,
        "client_id": new.client_id,
        "secret_hash": new.secret_hash,
        "redirect_uris": new.redirect_uris,
        "client_type": new.client_type,
        "tags": new.tags,
    }
    return await _update(store, found, replacement, secret)


async def delete(request: web.Request) -> web.Response:
    """404 for an application that does not exist (Kong's nested credential endpoints)."""
    found = unmanaged_app(await _found(request))
    await ctx(request).store.delete_credential(found.id)
    return no_content()
