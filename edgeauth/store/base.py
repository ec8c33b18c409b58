"""The one async storage interface; SQLite and PostgreSQL implement it identically.

Rule 1: nothing raw is ever written: tokens and codes by SHA-256 digest, secrets by PBKDF2.
Rule 2: every call that can race (code consumption, refresh rotation) is atomic in the store,
so that of N concurrent callers exactly one wins, whichever node or worker they run on.
Rule 3: every call that kills tokens returns only once the change is durable, and announces
the dead access-token digests to the listeners registered with `on_revoked`.
Rule 4: implementations raise only StoreError subclasses (StoreUnavailable when the database
cannot be reached, Conflict on a uniqueness clash), never a driver's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord, TokenView

RevocationListener = Callable[[Sequence[bytes]], None]


@dataclass(frozen=True, slots=True)
class NewCredential:
    consumer_id: str
    name: str
    client_id: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    client_type: ClientType
    tags: tuple[str, ...] = ()


class Store(Protocol):
    async def open(self) -> None:
        """Connect and run pending forward-only migrations."""

    async def close(self) -> None: ...

    def on_revoked(self, listener: RevocationListener) -> None:
        """Call `listener(access_digests)` after every revocation this store performs."""

    async def ping(self) -> bool:
        """Whether the database answers (for readiness and 503 decisions)."""

    # consumers -----------------------------------------------------------------------
    async def create_consumer(
        self, username: str | None, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        """Raises Conflict if the username or custom_id is taken."""

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        """Create or update by username (the declarative seed); idempotent."""

    async def get_consumer(self, id_or_username: str) -> Consumer | None: ...

    async def delete_consumer(self, consumer_id: str) -> bool:
        """Delete with its credentials and tokens; announces the tokens' digests."""

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        """Raises Conflict if the client_id is taken."""

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """Create or update by client_id (the declarative seed); idempotent. A changed
        secret hash or client type revokes the credential's tokens."""

    async def find_credential(self, client_id: str) -> Credential | None: ...

    async def get_credential(self, credential_id: str) -> Credential | None: ...

    async def delete_credential(self, credential_id: str) -> bool:
        """Delete with its tokens; announces the tokens' digests."""

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord) -> None: ...

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        """The token by access digest, revoked or expired ones included (callers judge)."""

    async def find_refresh(self, refresh_digest: bytes) -> TokenRecord | None:
        """The token row holding this refresh digest, in whatever state."""

    async def rotate_refresh(
        self, refresh_digest: bytes, new: TokenRecord, now: float
    ) -> TokenRecord | None:
        """Atomically retire the live row holding `refresh_digest` (revoked_at and
        refresh_used_at = now) and insert `new`. Returns the retired row, or None when no
        live row holds it (unknown, already rotated, revoked): exactly one concurrent
        caller wins. Announces the retired access digest."""

    async def replace_access(
        self,
        refresh_digest: bytes,
        access_digest: bytes,
        prefix: str,
        expires_at: float | None,
        now: float,
    ) -> TokenRecord | None:
        """`reuse_refresh_token = true`: atomically give the live row holding
        `refresh_digest` a new access token (created_at = now), keeping its refresh token.
        Returns the updated row, or None when no live row holds it. Announces the old
        access digest."""

    async def revoke_family(self, family_id: str, now: float) -> int:
        """Revoke every live token of the family; returns how many rows changed."""

    async def revoke_token(self, token_id: str, now: float) -> bool: ...

    # authorization codes ---------------------------------------------------------------
    async def save_code(self, code: AuthCode) -> None: ...

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        """Consume a code: returns it once, to exactly one caller, if unexpired."""

    # housekeeping ------------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        """Delete codes past expiry and tokens dead (expired or revoked, refresh included)
        for longer than `grace_seconds`; returns rows deleted."""
