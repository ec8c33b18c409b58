"""Start-up chores done once before serving: generated secrets and the declarative seed.

Rule 1: secrets edgeauth generates itself (provision keys, later the admin token) are created
0600 with O_EXCL, so concurrent starters agree on one value.
Rule 2: `[[consumers]]` is applied idempotently: an unchanged configured secret keeps its
stored hash (a fresh salt would look like a change and revoke the credential's tokens).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from edgeauth import crypto
from edgeauth.config import ConsumerSettings, CredentialSettings, ServiceSettings, Settings
from edgeauth.config.checks import anonymous_notes, exposure_warnings
from edgeauth.models import ClientType
from edgeauth.oauth.policy import Policy
from edgeauth.store import open_store
from edgeauth.store.base import NewCredential, Store

log = logging.getLogger(__name__)


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


async def _secret_hash(store: Store, cred: CredentialSettings) -> str | None:
    if cred.client_secret_hash:
        return cred.client_secret_hash
    if not cred.client_secret:
        return None
    existing = await store.find_credential(cred.client_id)
    if existing is not None and existing.secret_hash is not None:
        same = await asyncio.to_thread(
            crypto.verify_secret, cred.client_secret, existing.secret_hash
        )
        if same:
            return existing.secret_hash
    return await asyncio.to_thread(crypto.hash_secret, cred.client_secret)


async def seed_consumer(store: Store, consumer: ConsumerSettings) -> None:
    stored = await store.upsert_consumer(consumer.username, consumer.custom_id)
    for cred in consumer.oauth2:
        await store.upsert_credential(
            NewCredential(
                consumer_id=stored.id,
                name=cred.name,
                client_id=cred.client_id,
                secret_hash=await _secret_hash(store, cred),
                redirect_uris=cred.redirect_uris,
                client_type=ClientType(cred.client_type),
            )
        )


async def prepare(settings: Settings, store: Store) -> None:
    """Generate missing secrets and apply the declarative seed."""
    for service in settings.services:
        policy_for(service)
        if service.oauth2 is None:
            log.warning("service %s is public: no token is required", service.name)
    for warning in exposure_warnings(settings):
        log.warning("%s", warning)
    for note in anonymous_notes(settings):
        log.info("%s", note)
    for consumer in settings.consumers:
        await seed_consumer(store, consumer)


async def prepare_store(settings: Settings) -> None:
    """Once per start, before any worker: the admin token, the store's migrations, the seed."""
    read_or_create_secret(settings.admin.token_file)
    store = await open_store(settings.store)
    try:
        await prepare(settings, store)
    finally:
        await store.close()
