"""The data rules of the store, as pure decisions: what a call's arguments mean, when a save
checked against its client must not land, what a change to a client does to what was granted
to it, when a taken code is spent, which database schemas this code opens.

No I/O and no SQL: core.py runs the statements these decisions call for, in its transactions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeauth.errors import ClientChanged, StoreError, StoreUnavailable
from edgeauth.models import AuthCode, Consumer, Credential
from edgeauth.store.rows import Row, to_code

# How long the sweep keeps revocation-log entries: pollers must read them sooner than this.
REVOCATION_LOG_SECONDS = 3600.0


def identity(given_id: str | None, given_created_at: int | None) -> tuple[str, int]:
    """The id and created_at of a new consumer or credential: those given (an import keeps
    Kong's), else a new uuid and now."""
    entity_id = str(uuid.uuid4()) if given_id is None else given_id
    created_at = int(time.time()) if given_created_at is None else int(given_created_at)
    return entity_id, created_at


CONSUMER_PATCH = frozenset({"username", "custom_id", "tags"})
CREDENTIAL_PATCH = frozenset(
    {"name", "client_id", "secret_hash", "redirect_uris", "client_type", "tags"}
)
# The patchable columns holding a list (bound as the dialect binds one) and an enum (its value).
LIST_COLUMNS = frozenset({"tags", "redirect_uris"})
ENUM_COLUMNS = frozenset({"client_type"})


def patch_values(
    patch: Mapping[str, Any], columns: frozenset[str], strings: Callable[[Sequence[str]], object]
) -> dict[str, object]:
    """The patch as column values, lists as `strings` binds them (sql.Dialect.strings_param);
    a key that is no patchable column is a caller's bug. An unknown client_type is left to
    the CHECK constraint (a StoreError)."""
    unknown = sorted(set(patch) - columns)
    if unknown:
        raise StoreError(f"not a patchable field: {', '.join(unknown)}")
    return {name: _column(name, value, strings) for name, value in patch.items()}


def _column(name: str, value: Any, strings: Callable[[Sequence[str]], object]) -> object:
    if name in LIST_COLUMNS:
        return strings(value)
    return str(value) if name in ENUM_COLUMNS else value


def token_changes(expires_at: float | bool | None, scope: str | None) -> dict[str, object]:
    """update_token's arguments as column values (empty: nothing to change). `expires_at`
    False leaves it, None means never; a new scope binds the refresh token too."""
    if expires_at is True:
        raise StoreError("expires_at must be a time, None (never) or False (unchanged)")
    values: dict[str, object] = {}
    if expires_at is not False:
        values["expires_at"] = expires_at
    if scope is not None:
        values["scope"] = scope
        values["refresh_scope"] = None
    return values


def refuse_newer_schema(version: int, known: int) -> None:
    """StoreUnavailable when the database's schema `version` is newer than the `known`
    migrations: a newer edgeauth migrated it, and this one must not guess at its meaning."""
    if version > known:
        raise StoreUnavailable(
            f"the database schema (version {version}) is newer than this edgeauth (version {known})"
        )


def unexpired_code(rows: Sequence[Row], now: float) -> AuthCode | None:
    """The code a take_code deleted, unless none was there or it had expired at `now`."""
    if not rows or rows[0]["expires_at"] <= now:
        return None
    return to_code(rows[0])


# saves checked against their client ---------------------------------------------------------
def expected_client(credential_id: str, issued_to: Credential | None) -> Credential | None:
    """The `issued_to` of a save; a credential other than the row's is the caller's bug."""
    if issued_to is not None and issued_to.id != credential_id:
        raise StoreError("issued_to is not the credential the token or code belongs to")
    return issued_to


def refusal(
    clients: Mapping[str, Credential], expected: Credential | None, *, redirects: bool
) -> ClientChanged | None:
    """Why a save checked against `expected` must not land, now that the credentials are
    `clients` (by id): its credential is gone, or has another owner, secret hash or client
    type (and, for a code, other redirect URIs) than the request was checked against. None
    when it may land."""
    if expected is None:
        return None
    current = clients.get(expected.id)
    if current is not None and _issued_as(current, redirects) == _issued_as(expected, redirects):
        return None
    return ClientChanged()


def _issued_as(credential: Credential, redirects: bool) -> tuple[object, ...]:
    fingerprint = (credential.consumer_id, credential.secret_hash, credential.client_type)
    return (*fingerprint, credential.redirect_uris) if redirects else fingerprint


# changes to a consumer or client ------------------------------------------------------------
def identity_changed(old: Consumer, new: Consumer) -> bool:
    """Whether a change to a consumer makes the identity cached with its tokens stale (a new
    username or custom_id): their digests and its marker are then logged and announced."""
    return (old.username, old.custom_id) != (new.username, new.custom_id)


@dataclass(frozen=True, slots=True)
class ClientChange:
    """What a change to a credential does beyond its row (see client_change)."""

    void: bool  # revoke its tokens and drop its codes: nothing else applies
    dropped: tuple[str, ...] = ()  # drop the codes sent to these redirect URIs
    default_dropped: bool = False  # and those sent to none (they went to the old first URI)
    renamed: bool = False  # a new client_id: its unrevoked tokens' cached identity is stale


def client_change(old: Credential, new: Credential) -> ClientChange:
    """Another owner, secret hash or client type voids what was granted (it was granted to a
    different client); removed redirect URIs void the codes sent to them; a new client_id
    makes what caches hold for its unrevoked tokens stale."""
    if grants_void(old, new):
        return ClientChange(void=True)
    removed, default = dropped_redirects(old.redirect_uris, new.redirect_uris)
    return ClientChange(False, removed, default, old.client_id != new.client_id)


def grants_void(old: Credential, new: Credential) -> bool:
    """Whether what was granted to `old` does not belong to `new`: another owner, secret hash
    or client type (its tokens are revoked and its codes dropped)."""
    return _issued_as(old, False) != _issued_as(new, False)


def dropped_redirects(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """The redirect URIs a change removed, and whether the default (the old first one) is
    among them: codes issued without a redirect_uri went to that default."""
    removed = tuple(uri for uri in old if uri not in new)
    return removed, bool(old) and old[0] in removed
