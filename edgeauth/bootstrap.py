"""Start-up chores done before serving: generated secrets, the declarative seed, reload checks.

Rule 1: secrets edgeauth generates itself (provision keys, later the admin token) are created
0600 with O_EXCL, so concurrent starters agree on one value.
Rule 2: `[[consumers]]` is config's own: what it declares is tagged MANAGED_TAG and applied at
every start and reload, idempotently (an unchanged configured secret keeps its stored hash: a
fresh salt would look like a change and revoke the credential's tokens).
Rule 3: the seed changes managed entities only. A consumer or application of the same name
that the admin API created is the admin API's: skipped with a warning, never overwritten, on
start as on reload. A managed application that config.toml no longer declares is deleted with
its tokens, as Kong's DB-less mode would: the admin API cannot change or delete it, and taking
a client out of the file must cut its access; a managed consumer goes too once it holds no
application (an application config does not own is never deleted by config).
Rule 4: every change the seed makes is logged: created, which fields changed, deleted, and how
many live tokens the change revoked.
Rule 5 (upgrades): a version before rule 2 seeded without the tag. At a start on a store that
holds no managed entity yet, an untagged entity that is exactly what config declares is
adopted: tagged managed and logged, nothing else changed (no admin change can be lost: there is
none). Never on a reload, and never once anything is managed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from edgeauth import crypto, tls
from edgeauth.config import ConsumerSettings, CredentialSettings, ServiceSettings, Settings
from edgeauth.config.checks import anonymous_notes, exposure_warnings, restart_needed
from edgeauth.errors import Conflict
from edgeauth.models import MANAGED_TAG, ClientType, Consumer, Credential
from edgeauth.oauth.policy import Policy
from edgeauth.store import open_store
from edgeauth.store.base import NewCredential, Page, Store, TagFilter, TokenFilter
from edgeauth.stream.server import context_problems

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE = 1000
MANAGED = TagFilter((MANAGED_TAG,))
# Credential attributes as the log names them when config changes them.
_CREDENTIAL_FIELDS = {
    "name": "name",
    "secret_hash": "client_secret",
    "redirect_uris": "redirect_uris",
    "client_type": "client_type",
    "consumer_id": "consumer",
    "tags": "tags",
}


def read_or_create_secret(path: Path) -> str:
    """The secret in `path`, creating it (0600, 256 random bits) if it does not exist."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = crypto.mint()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()  # another process created it first
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.info("generated a secret", extra={"fields": {"file": str(path)}})
    return value


def policy_for(service: ServiceSettings) -> Policy | None:
    """The OAuth policy of a protected service (None for a public one)."""
    oauth2 = service.oauth2
    if oauth2 is None:
        return None
    key = oauth2.provision_key
    if not key:
        if oauth2.provision_key_file is None:
            raise ValueError(f"service {service.name}: no provision key")
        key = read_or_create_secret(oauth2.provision_key_file)
    return Policy(service.name, oauth2, key)


async def _secret_hash(old: Credential | None, cred: CredentialSettings) -> str | None:
    """The hash to store: the stored one while the configured secret still verifies against it."""
    if cred.client_secret_hash:
        return cred.client_secret_hash
    if not cred.client_secret:
        return None
    if old is not None and old.secret_hash is not None:
        same = await asyncio.to_thread(crypto.verify_secret, cred.client_secret, old.secret_hash)
        if same:
            return old.secret_hash
    return await asyncio.to_thread(crypto.hash_secret, cred.client_secret)


def managed_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """The tags config gives, then MANAGED_TAG (once)."""
    return tuple(dict.fromkeys((*tags, MANAGED_TAG)))


async def _every(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a paged store list."""
    items: list[T] = []
    after: str | None = None
    while True:
        page = await fetch(after)
        items.extend(page.items)
        if page.next is None:
            return items
        after = page.next


async def _live_tokens(store: Store, credential_id: str) -> int:
    """The credential's unrevoked tokens: what a change that voids its grants revokes (the
    store revokes without counting; counted just before the change)."""
    which = TokenFilter(credential_id=credential_id)
    now = time.time()
    views = await _every(lambda after: store.list_tokens(which, now, after=after, size=PAGE))
    return sum(1 for view in views if view.token.revoked_at is None)


def _voids(old: Credential, new: NewCredential) -> bool:
    """The store's rule (grants_void): another owner, secret hash or client type revokes what
    was granted to the credential."""
    was = (old.consumer_id, old.secret_hash, old.client_type)
    return was != (new.consumer_id, new.secret_hash, new.client_type)


async def apply_seed(
    store: Store, consumers: tuple[ConsumerSettings, ...], *, starting: bool = False
) -> None:
    """Rules 2-5. Deletions come after the upserts, so that an application config moves to
    another consumer is moved (and keeps its id), never deleted and created again."""
    adopt = starting and not await _any_managed(store)
    for consumer in consumers:
        await _seed_consumer(store, consumer, adopt)
    client_ids = {cred.client_id for consumer in consumers for cred in consumer.oauth2}
    for cred in await _every(
        lambda after: store.list_credentials(tags=MANAGED, after=after, size=PAGE)
    ):
        if cred.client_id not in client_ids:
            await _retire_credential(store, cred)
    usernames = {consumer.username for consumer in consumers}
    for stored in await _every(
        lambda after: store.list_consumers(tags=MANAGED, after=after, size=PAGE)
    ):
        if stored.username not in usernames:
            await _retire_consumer(store, stored)


async def _any_managed(store: Store) -> bool:
    consumers = await store.list_consumers(tags=MANAGED, size=1)
    return bool(consumers.items or (await store.list_credentials(tags=MANAGED, size=1)).items)


async def _seed_consumer(store: Store, declared: ConsumerSettings, adopt: bool) -> None:
    old = await store.get_consumer(declared.username)
    if old is not None and MANAGED_TAG not in old.tags and adopt and _declares(declared, old):
        log.info("config adopted a consumer", extra={"fields": {"username": old.username}})
    elif old is not None and MANAGED_TAG not in old.tags:
        skipped = [cred.client_id for cred in declared.oauth2]
        log.warning(
            "config.toml declares a consumer that the admin API created: left as it is, with"
            " the applications declared under it; remove it from config.toml, or delete it"
            " through the admin API for config to create it",
            extra={"fields": {"username": declared.username, "id": old.id, "skipped": skipped}},
        )
        return
    tags = managed_tags(declared.tags)
    try:
        new = await store.upsert_consumer(declared.username, declared.custom_id, tags)
    except Conflict as exc:
        log.error(
            "config.toml declares a consumer the store refuses: not applied, nor its applications",
            extra={"fields": {"username": declared.username, "reason": exc.message}},
        )
        return
    _log_consumer(old, new)
    for cred in declared.oauth2:
        await _seed_credential(store, new, cred, adopt)


def _declares(declared: ConsumerSettings, old: Consumer) -> bool:
    """Rule 5: nothing but what config declares (its tags among the declared ones)."""
    return old.custom_id == declared.custom_id and set(old.tags) <= set(declared.tags)


def _log_consumer(old: Consumer | None, new: Consumer) -> None:
    fields: dict[str, object] = {"username": new.username, "id": new.id}
    if old is None:
        log.info("config created a consumer", extra={"fields": fields})
        return
    changed = [name for name in ("custom_id", "tags") if getattr(old, name) != getattr(new, name)]
    if changed:
        log.info("config updated a consumer", extra={"fields": {**fields, "changed": changed}})


async def _seed_credential(
    store: Store, owner: Consumer, declared: CredentialSettings, adopt: bool
) -> None:
    old = await store.find_credential(declared.client_id)
    untagged = old is not None and MANAGED_TAG not in old.tags
    if old is not None and untagged and adopt and await _declares_app(declared, owner, old):
        log.info("config adopted an application", extra={"fields": {"client_id": old.client_id}})
    elif old is not None and untagged:
        log.warning(
            "config.toml declares an application that the admin API created: left as it is;"
            " remove it from config.toml, or delete it through the admin API for config to"
            " create it",
            extra={"fields": {"client_id": declared.client_id, "id": old.id}},
        )
        return
    new = NewCredential(
        consumer_id=owner.id,
        name=declared.name,
        client_id=declared.client_id,
        secret_hash=await _secret_hash(old, declared),
        redirect_uris=declared.redirect_uris,
        client_type=ClientType(declared.client_type),
        tags=managed_tags(declared.tags),
    )
    revoked = await _live_tokens(store, old.id) if old is not None and _voids(old, new) else 0
    _log_credential(old, await store.upsert_credential(new), revoked)


async def _declares_app(declared: CredentialSettings, owner: Consumer, old: Credential) -> bool:
    """Rule 5: the declared owner, name, redirect URIs, type and secret, no other tags."""
    same = (old.consumer_id, old.name, old.redirect_uris, old.client_type.value) == (
        owner.id,
        declared.name,
        declared.redirect_uris,
        declared.client_type,
    )
    if not same or not set(old.tags) <= set(declared.tags):
        return False
    return await _secret_hash(old, declared) == old.secret_hash


def _log_credential(old: Credential | None, new: Credential, revoked: int) -> None:
    fields: dict[str, object] = {"client_id": new.client_id, "id": new.id}
    if old is None:
        log.info("config created an application", extra={"fields": fields})
        return
    changed = [
        shown
        for name, shown in _CREDENTIAL_FIELDS.items()
        if getattr(old, name) != getattr(new, name)
    ]
    if changed:
        fields.update(changed=changed, tokens_revoked=revoked)
        log.info("config updated an application", extra={"fields": fields})


async def _retire_credential(store: Store, cred: Credential) -> None:
    revoked = await _live_tokens(store, cred.id)
    if await store.delete_credential(cred.id):
        fields = {"client_id": cred.client_id, "id": cred.id, "tokens_revoked": revoked}
        log.warning(
            "config deleted an application that config.toml no longer declares",
            extra={"fields": fields},
        )


async def _retire_consumer(store: Store, consumer: Consumer) -> None:
    """A consumer that still holds an application stays: deleting it would delete one that
    config does not own (the admin API's) or still declares (one it could not move)."""
    held = await store.list_credentials(consumer_id=consumer.id, size=PAGE)
    fields: dict[str, object] = {"username": consumer.username, "id": consumer.id}
    if held.items:
        client_ids = [cred.client_id for cred in held.items]
        log.warning(
            "config.toml no longer declares a consumer that still holds applications: left as"
            " it is until it holds none",
            extra={"fields": {**fields, "applications": client_ids}},
        )
    elif await store.delete_consumer(consumer.id):
        log.warning(
            "config deleted a consumer that config.toml no longer declares",
            extra={"fields": fields},
        )


async def prepare(settings: Settings, store: Store, *, starting: bool = False) -> None:
    """Generate missing secrets and apply the declarative seed."""
    for service in settings.services:
        policy_for(service)
        if service.oauth2 is None:
            log.warning("service %s is public: no token is required", service.name)
    for warning in exposure_warnings(settings):
        log.warning("%s", warning)
    for note in anonymous_notes(settings):
        log.info("%s", note)
    await apply_seed(store, settings.consumers, starting=starting)


async def prepare_store(settings: Settings, *, starting: bool = False) -> None:
    """Once per start (`starting`) and reload, before any worker: the admin token, the store's
    migrations, the seed."""
    read_or_create_secret(settings.admin.token_file)
    store = await open_store(settings.store)
    try:
        await prepare(settings, store, starting=starting)
    finally:
        await store.close()


def reload_problems(running: Settings, new: Settings) -> list[str]:
    """Why a valid `new` config could still not replace `running` by a reload: keys only a
    restart applies, and a certificate or key that does not load."""
    problems = restart_needed(running, new)
    server = new.server
    try:
        tls.server_context(server.tls_cert_file, server.tls_key_file, server.tls_min_version)
    except (OSError, ssl.SSLError) as exc:
        problems.append(
            f"{new.source.name}: server.tls_cert_file / server.tls_key_file: the certificate or"
            f" key does not load: {exc}"
        )
    return problems + context_problems(new)
