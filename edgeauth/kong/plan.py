"""What an import from Kong will do, decided before anything is written. Pure.

Rule 1: every Kong consumer, credential and token gets one status: create, unchanged (its id
is already in the store: re-running an import is idempotent), conflict (it clashes with what
the store holds, which is kept) or skipped (it cannot be carried, with why). Expired tokens
are counted apart.
Rule 2: ids and creation times are Kong's. A decK dump without ids gets ids derived from the
username or client_id (uuid5), so that its re-import matches the first one.
Rule 3: tokens become SHA-256 digests (crypto.digest) at once; the raw tokens go no further.
An access token lives until created_at + expires_in (0: never) and no longer than its row
(Kong's `ttl`, which ends its refresh token too); a row whose access token and refresh token
are both dead is expired; one whose refresh token still lives is carried for it.
Rule 4: imported consumers and credentials are admin data, never config-managed: Kong's tags
are kept, less MANAGED_TAG.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from edgeauth import crypto
from edgeauth.config.schema import has_control, identity_problem
from edgeauth.kong.model import KongConsumer, KongCredential, KongData, KongToken
from edgeauth.kong.render import problems, render
from edgeauth.kong.services import convert_services
from edgeauth.models import MANAGED_TAG, ClientType, Consumer, Credential, TokenRecord
from edgeauth.store.base import NewCredential

Status = Literal["create", "unchanged", "conflict", "skipped"]
_IDS = uuid.UUID("8a3e8f52-3f0c-4d8e-9a53-6b1c6d2b7e10")  # the namespace of derived ids


@dataclass(frozen=True, slots=True)
class Existing:
    """What the store (and config.toml) already hold, as far as an import can clash with."""

    consumers: tuple[Consumer, ...] = ()
    credentials: tuple[Credential, ...] = ()
    token_ids: frozenset[str] = frozenset()
    config_services: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ConsumerStep:
    status: Status
    label: str
    consumer: Consumer  # as it will be created (id and created_at Kong's)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CredentialStep:
    status: Status
    label: str
    new: NewCredential | None  # None when skipped before it could be built
    clear_secret: str | None = None  # to hash when applied (Kong kept it in clear)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TokenTally:
    records: tuple[TokenRecord, ...] = ()  # to import
    unchanged: int = 0
    expired: int = 0
    refresh_only: int = 0  # among records: the access token is dead, the refresh token lives
    skipped: dict[str, int] = field(default_factory=dict)  # why → how many


@dataclass(frozen=True, slots=True)
class Plan:
    source: str
    consumers: tuple[ConsumerStep, ...]
    credentials: tuple[CredentialStep, ...]
    tokens: TokenTally
    codes: int  # authorization codes, never carried
    services_toml: str
    services: int
    routes: int
    config_problems: tuple[str, ...]
    not_carried: tuple[str, ...]
    notes: tuple[str, ...]

    def conflicts(self) -> list[str]:
        steps: list[ConsumerStep | CredentialStep] = [*self.consumers, *self.credentials]
        found = [f"{s.label}: {s.reason}" for s in steps if s.status == "conflict"]
        return [*found, *self.config_problems]

    def skipped(self) -> list[str]:
        steps: list[ConsumerStep | CredentialStep] = [*self.consumers, *self.credentials]
        return [f"{s.label}: {s.reason}" for s in steps if s.status == "skipped"]


def make_plan(data: KongData, existing: Existing, now: float) -> Plan:
    consumers, owners = _consumers(data.consumers, existing, int(now))
    credentials = _credentials(data.credentials, owners, existing, int(now))
    out = convert_services(data)
    written = [
        (table, source)
        for table, source in zip(out.tables, out.sources, strict=True)
        if table["name"] not in existing.config_services
    ]
    kept = [
        f'service "{t["name"]}": already in config.toml, not written again'
        for t in out.tables
        if t["name"] in existing.config_services
    ]
    text = render([t for t, _ in written], [s for _, s in written])
    carried = {
        s.new.id
        for s in credentials
        if s.new is not None and s.new.id and s.status in ("create", "unchanged")
    }
    return Plan(
        source=data.source,
        consumers=tuple(consumers),
        credentials=tuple(credentials),
        tokens=_tokens(data.tokens, carried, out.token_services, existing.token_ids, now),
        codes=data.codes,
        services_toml=text,
        services=len(written),
        routes=sum(len(t["routes"]) for t, _ in written),
        config_problems=tuple(problems(text)),
        not_carried=(*data.unread, *out.not_carried),
        notes=(*kept, *out.notes),
    )


def derived_id(kind: str, key: str) -> str:
    """The id of an entity a decK dump gave none: the same for the same name every time."""
    return str(uuid.uuid5(_IDS, f"{kind}\x00{key}"))


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    return tuple(tag for tag in tags if tag != MANAGED_TAG)


# consumers ------------------------------------------------------------------------------------
def _consumers(
    kong: Iterable[KongConsumer], existing: Existing, now: int
) -> tuple[list[ConsumerStep], dict[str, str | None]]:
    """The steps, and each Kong reference to a consumer (id, username, custom_id) → the
    store id its credentials go to (None: the consumer is not carried)."""
    by_id = {c.id: c for c in existing.consumers}
    by_name = {c.username: c for c in existing.consumers if c.username is not None}
    by_custom = {c.custom_id: c for c in existing.consumers if c.custom_id is not None}
    steps: list[ConsumerStep] = []
    owners: dict[str, str | None] = {}
    seen: set[str] = set()
    for c in kong:
        key = c.username or c.custom_id
        record = Consumer(
            id=c.id or derived_id("consumer", key or ""),
            username=c.username,
            custom_id=c.custom_id,
            tags=_tags(c.tags),
            created_at=now if c.created_at is None else c.created_at,
        )
        label = _consumer_label(c, record.id)
        status, reason = _consumer_status(record, by_id, by_name, by_custom)
        if key is None:
            status, reason = "skipped", "neither username nor custom_id"
        elif record.id in seen:
            status, reason = "skipped", "listed twice"
        seen.add(record.id)
        steps.append(ConsumerStep(status, label, record, reason))
        carried = record.id if status in ("create", "unchanged") else None
        for ref in (c.id, c.username, c.custom_id):
            if ref is not None:
                owners.setdefault(ref, carried)
    return steps, owners


def _consumer_label(c: KongConsumer, consumer_id: str) -> str:
    name = c.username if c.username is not None else f"custom_id {c.custom_id}"
    return f'consumer "{name}" (id {consumer_id})'


def _consumer_status(
    record: Consumer,
    by_id: dict[str, Consumer],
    by_name: dict[str, Consumer],
    by_custom: dict[str, Consumer],
) -> tuple[Status, str]:
    for value, is_key in ((record.username, True), (record.custom_id, False)):
        problem = None if value is None else identity_problem(value, key=is_key)
        if problem is not None:
            return "conflict", f"{'username' if is_key else 'custom_id'} {problem}"
    stored = by_id.get(record.id)
    if stored is not None:
        same = (stored.username, stored.custom_id) == (record.username, record.custom_id)
        return "unchanged", "" if same else "the store's copy differs and is kept"
    holder = by_name.get(record.username or "")
    if holder is not None:
        return "conflict", f"username taken by consumer {holder.id}"
    holder = by_custom.get(record.custom_id or "")
    if holder is not None:
        return "conflict", f"custom_id taken by consumer {holder.id}"
    return "create", ""


# credentials ----------------------------------------------------------------------------------
def _credentials(
    kong: Iterable[KongCredential],
    owners: dict[str, str | None],
    existing: Existing,
    now: int,
) -> list[CredentialStep]:
    by_id = {c.id: c for c in existing.credentials}
    by_client = {c.client_id: c for c in existing.credentials}
    steps: list[CredentialStep] = []
    seen: set[str] = set()
    for c in kong:
        label = f'application "{c.name}" (client_id {c.client_id}, id {c.id or "derived"})'
        if c.client_id is None:
            steps.append(CredentialStep("skipped", label, None, reason="no client_id"))
            continue
        cred_id = c.id or derived_id("credential", c.client_id)
        label = f'application "{c.name}" (client_id {c.client_id}, id {cred_id})'
        step = _credential(c, c.client_id, cred_id, label, owners.get(c.consumer), now)
        if step.status == "create" and step.new is not None:
            step = _against_store(step, step.new, by_id, by_client)
        if cred_id in seen:
            step = CredentialStep("skipped", label, step.new, reason="listed twice")
        seen.add(cred_id)
        steps.append(step)
    return steps


def _credential(
    c: KongCredential, client_id: str, cred_id: str, label: str, owner: str | None, now: int
) -> CredentialStep:
    """The step for one credential before looking at the store: skipped or conflicting on
    its own, or to create."""
    if owner is None:
        return CredentialStep("skipped", label, None, reason=f"consumer {c.consumer} not carried")
    if c.client_type not in ("confidential", "public"):
        return CredentialStep("skipped", label, None, reason=f"client_type {c.client_type}")
    problem = identity_problem(client_id, key=True)
    if problem is not None:
        return CredentialStep("conflict", label, None, reason=f"client_id {problem}")
    secret_hash, clear, why = _secret(c)
    if why is not None:
        return CredentialStep("conflict", label, None, reason=why)
    new = NewCredential(
        consumer_id=owner,
        name=c.name or client_id,
        client_id=client_id,
        secret_hash=secret_hash,
        redirect_uris=c.redirect_uris,
        client_type=ClientType(c.client_type),
        tags=_tags(c.tags),
        id=cred_id,
        created_at=now if c.created_at is None else c.created_at,
    )
    return CredentialStep("create", label, new, clear_secret=clear)


def _secret(c: KongCredential) -> tuple[str | None, str | None, str | None]:
    """(PHC hash kept as is, clear secret to hash, why it cannot be carried)."""
    if c.client_type == "public":
        return None, None, None  # Kong generates one anyway; a public client never uses it
    secret = c.client_secret or ""
    if not secret:
        return None, None, "a confidential client without a client_secret"
    if secret.startswith("{vault://"):
        return None, None, "client_secret is a Kong vault reference: resolve it first"
    if not c.hash_secret:
        return None, secret, None
    if crypto.parse_phc(secret) is None:
        return None, None, "hashed secret in a form edgeauth cannot verify (not Kong's PBKDF2)"
    return secret, None, None


def _against_store(
    step: CredentialStep,
    new: NewCredential,
    by_id: dict[str, Credential],
    by_client: dict[str, Credential],
) -> CredentialStep:
    stored = by_id.get(new.id or "")
    if stored is not None:
        same = (stored.client_id, stored.consumer_id) == (new.client_id, new.consumer_id)
        reason = "" if same else "the store's copy differs and is kept"
        return CredentialStep("unchanged", step.label, new, reason=reason)
    holder = by_client.get(new.client_id)
    if holder is not None:
        why = f"client_id taken by application {holder.id}"
        return CredentialStep("conflict", step.label, new, reason=why)
    return step


# tokens ---------------------------------------------------------------------------------------
def _tokens(
    kong: Iterable[KongToken],
    credentials: set[str],
    services: dict[str, str],
    stored: frozenset[str],
    now: float,
) -> TokenTally:
    records: list[TokenRecord] = []
    skipped: Counter[str] = Counter()
    unchanged = expired = refresh_only = 0
    for t in kong:
        access_until = _access_until(t)
        refresh_lives = t.refresh_token is not None and (t.ttl is None or t.ttl > now)
        access_lives = access_until is None or access_until > now
        why = _token_refusal(t, credentials, services)
        if not (access_lives or refresh_lives):
            expired += 1
        elif why is not None:
            skipped[why] += 1
        elif t.id in stored:
            unchanged += 1
        else:
            refresh_only += not access_lives
            records.append(_record(t, services, access_until))
    return TokenTally(tuple(records), unchanged, expired, refresh_only, dict(skipped))


def _access_until(t: KongToken) -> float | None:
    until = t.created_at + t.expires_in if t.expires_in > 0 else None
    if t.ttl is not None:
        until = t.ttl if until is None else min(until, t.ttl)
    return until


def _token_refusal(t: KongToken, credentials: set[str], services: dict[str, str]) -> str | None:
    if t.credential_id not in credentials:
        return "its application is not carried"
    if t.service_id is not None and t.service_id not in services:
        return "its service is not carried as a protected service"
    if any(has_control(v) for v in (t.authenticated_userid or "", t.scope or "")):
        return "control characters in authenticated_userid or scope"
    return None


def _record(t: KongToken, services: dict[str, str], access_until: float | None) -> TokenRecord:
    """The token as edgeauth stores it: digests, Kong's id, its credential's (kept) id."""
    refresh = t.refresh_token
    return TokenRecord(
        id=t.id,
        access_digest=crypto.digest(t.access_token),
        refresh_digest=None if refresh is None else crypto.digest(refresh),
        prefix=crypto.prefix(t.access_token),
        credential_id=t.credential_id,
        service=None if t.service_id is None else services[t.service_id],
        authenticated_userid=t.authenticated_userid,
        scope=t.scope or "",
        family_id=t.id,
        created_at=t.created_at,
        expires_at=access_until,
        refresh_expires_at=None if refresh is None else t.ttl,
    )
