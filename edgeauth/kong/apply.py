"""Between a Plan and the store: what the store already holds (snapshot), and the writes (apply).

Rule 1: only consumers, credentials and tokens are written, all through the Store interface
(so both backends, their transactions and their conflict rules apply); services never reach
the store: they are config.
Rule 2: something created meanwhile by someone else turns a planned creation into a conflict
(the store's Conflict), reported like the plan's own; a credential whose consumer could not
be created is not created, nor are the tokens of a credential that was not.
Rule 3: clear secrets are hashed here (PBKDF2, ≈15 ms each) on worker threads, all cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from edgeauth import crypto
from edgeauth.errors import Conflict
from edgeauth.kong.model import KongData
from edgeauth.kong.plan import CredentialStep, Existing, Plan
from edgeauth.models import Credential
from edgeauth.store.base import NewCredential, Page, Store, TokenFilter

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (tokens done, tokens in all)
PAGE = 1000
TOKEN_CHUNK = 5000  # tokens per import_tokens call: one transaction, one progress step


@dataclass
class Applied:
    consumers: int = 0
    credentials: int = 0
    tokens: int = 0
    tokens_present: int = 0  # planned, but found stored when written (nothing changed)
    conflicts: list[str] = field(default_factory=list)


async def snapshot(store: Store, data: KongData, config_services: frozenset[str]) -> Existing:
    """Every consumer and credential of the store, and the ids of the stored tokens of the
    credentials Kong's tokens belong to (an import's re-run finds its tokens there)."""
    consumers = await _every(lambda after: store.list_consumers(after=after, size=PAGE))
    credentials = await _every(lambda after: store.list_credentials(after=after, size=PAGE))
    wanted = {t.credential_id for t in data.tokens}
    token_ids: set[str] = set()
    for credential in credentials:
        if credential.id in wanted:
            token_ids.update(await _token_ids(store, credential))
    return Existing(
        consumers=tuple(consumers),
        credentials=tuple(credentials),
        token_ids=frozenset(token_ids),
        config_services=config_services,
    )


async def _every(page: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    items: list[T] = []
    after: str | None = None
    while True:
        found = await page(after)
        items.extend(found.items)
        after = found.next
        if after is None:
            return items


async def _token_ids(store: Store, credential: Credential) -> list[str]:
    which = TokenFilter(credential_id=credential.id)
    views = await _every(lambda after: store.list_tokens(which, 0.0, after=after, size=PAGE))
    return [view.token.id for view in views]


async def apply(store: Store, plan: Plan, progress: Progress | None = None) -> Applied:
    applied = Applied()
    lost = await _create_consumers(store, plan, applied)
    planned = [(s, s.new) for s in plan.credentials if s.status == "create" and s.new is not None]
    for step, new in planned:
        if new.consumer_id in lost:
            applied.conflicts.append(f"{step.label}: its consumer could not be created")
    missing = await _create_credentials(
        store, [(s, new) for s, new in planned if new.consumer_id not in lost], applied
    )
    records = [r for r in plan.tokens.records if r.credential_id not in missing]
    for start in range(0, len(records), TOKEN_CHUNK):
        chunk = records[start : start + TOKEN_CHUNK]
        applied.tokens += await store.import_tokens(chunk)
        if progress is not None:
            progress(start + len(chunk), len(records))
    applied.tokens_present = len(records) - applied.tokens
    return applied


async def _create_consumers(store: Store, plan: Plan, applied: Applied) -> set[str]:
    """Creates the planned consumers; returns the ids of those it could not."""
    lost: set[str] = set()
    for step in plan.consumers:
        if step.status != "create":
            continue
        c = step.consumer
        try:
            await store.create_consumer(
                c.username, c.custom_id, c.tags, id=c.id, created_at=c.created_at
            )
        except Conflict as exc:
            applied.conflicts.append(f"{step.label}: {exc}")
            lost.add(c.id)
        else:
            applied.consumers += 1
    return lost


async def _create_credentials(
    store: Store, planned: Sequence[tuple[CredentialStep, NewCredential]], applied: Applied
) -> set[str]:
    """Creates the planned credentials (clear secrets hashed first); returns the ids of
    those it could not."""
    lost: set[str] = set()
    hashed = await asyncio.gather(*(_hashed(step, new) for step, new in planned))
    for (step, _), new in zip(planned, hashed, strict=True):
        try:
            await store.create_credential(new)
        except Conflict as exc:
            applied.conflicts.append(f"{step.label}: {exc}")
            lost.add(new.id or "")
        else:
            applied.credentials += 1
    return lost


async def _hashed(step: CredentialStep, new: NewCredential) -> NewCredential:
    if step.clear_secret is None:
        return new
    return replace(new, secret_hash=await asyncio.to_thread(crypto.hash_secret, step.clear_secret))
