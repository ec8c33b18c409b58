"""The one async storage interface; core.SQLStore implements it once, on SQLite or PostgreSQL.

Rule 1: nothing raw is ever written: tokens and codes by SHA-256 digest, secrets by PBKDF2.
Rule 2: every call that can race (code consumption, refresh rotation) is atomic in the store,
so that of N concurrent callers exactly one wins, whichever node or worker they run on.
Rule 3: every call that kills tokens returns only once the change is durable, and announces
the dead access-token digests to the listeners registered with `on_revoked`; so does every
call that makes what caches hold for live tokens stale (their expiry, scope or identity),
without revoking them.
Rule 4: implementations raise only StoreError subclasses (StoreUnavailable when the database
cannot be reached, Conflict on a uniqueness clash), never a driver's exception.
Rule 5: a write is not abandoned when its caller is cancelled: the cancelled caller waits for
the commit (or failure) and the announcement before its cancellation proceeds, so a commit is
never parted from its announcement, and what the caller does next sees the write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypedDict, TypeVar

from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord, TokenView

RevocationListener = Callable[[Sequence[bytes]], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; `next` is an opaque cursor, None at the end."""

    items: tuple[T, ...]
    next: str | None


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Kong's `?tags=a,b` (all of them) or `?tags=a/b` (any of them)."""

    tags: tuple[str, ...]
    any: bool = False


@dataclass(frozen=True, slots=True)
class TokenFilter:
    """Which tokens an admin list or bulk revoke applies to; None = no constraint."""

    authenticated_userid: str | None = None
    credential_id: str | None = None
    consumer_id: str | None = None
    service: str | None = None
    active: bool | None = None  # True: not revoked and not expired at `now`; False: the rest


class ConsumerPatch(TypedDict, total=False):
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...]


class CredentialPatch(TypedDict, total=False):
    name: str
    client_id: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    client_type: ClientType
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewCredential:
    consumer_id: str
    name: str
    client_id: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    client_type: ClientType
    tags: tuple[str, ...] = ()
    id: str | None = None  # None: a new uuid (Kong's id is kept on import or when given)
    created_at: int | None = None  # None: now


class Store(Protocol):
    async def open(self) -> None:
        """Connect and run pending forward-only migrations."""

    async def close(self) -> None: ...

    def on_revoked(self, listener: RevocationListener) -> None:
        """Call `listener(access_digests)` after every revocation this store performs, and
        every change that makes cached copies stale (see revocations_since)."""

    async def ping(self) -> bool:
        """Whether the database answers (for readiness and 503 decisions)."""

    # consumers -----------------------------------------------------------------------
    async def create_consumer(
        self,
        username: str | None,
        custom_id: str | None,
        tags: tuple[str, ...] = (),
        *,
        id: str | None = None,
        created_at: int | None = None,
    ) -> Consumer:
        """Raises Conflict if the id, username or custom_id is taken. `id` None: a new uuid;
        `created_at` None: now (both are kept when given: Kong's ids and times survive)."""

    async def upsert_consumer(
        self, username: str, custom_id: str | None, tags: tuple[str, ...] = ()
    ) -> Consumer:
        """Create or update by username (the declarative seed); idempotent. A changed
        custom_id announces as update_consumer does."""

    async def get_consumer(self, id_or_username: str) -> Consumer | None: ...

    async def delete_consumer(self, consumer_id: str) -> bool:
        """Delete with its credentials and tokens; announces the unrevoked tokens' digests and
        crypto.consumer_marker(consumer_id)."""

    # credentials ---------------------------------------------------------------------
    async def create_credential(self, new: NewCredential) -> Credential:
        """Raises Conflict if the client_id is taken."""

    async def upsert_credential(self, new: NewCredential) -> Credential:
        """Create or update by client_id (the declarative seed); idempotent. A changed
        consumer, secret hash or client type revokes the credential's tokens (announced) and
        drops its codes; removed redirect URIs drop the codes sent to them (and, when the old
        first URI, the default, is removed, the codes without a redirect_uri)."""

    async def find_credential(self, client_id: str) -> Credential | None: ...

    async def get_credential(self, credential_id: str) -> Credential | None: ...

    async def delete_credential(self, credential_id: str) -> bool:
        """Delete with its tokens; announces the tokens' digests."""

    # tokens --------------------------------------------------------------------------
    async def save_token(self, record: TokenRecord, issued_to: Credential | None = None) -> None:
        """Insert a token. With `issued_to` (the client as the grant checked it), the token is
        saved only if that credential still exists with the same consumer_id, secret_hash
        and client_type, checked in the insert's own transaction (so that of a token and a
        concurrent change to its client, whichever commits second sees the other); else
        ClientChanged and nothing is saved."""

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        """The token by access digest, revoked or expired ones included (callers judge)."""

    async def import_tokens(self, records: Sequence[TokenRecord]) -> int:
        """Insert many tokens at once (a migration from Kong), in few transactions; a record
        whose id or access or refresh digest is already stored is skipped, so re-running an
        import is idempotent. Returns how many were inserted."""

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
    async def save_code(self, code: AuthCode, issued_to: Credential | None = None) -> None:
        """As save_token: with `issued_to`, saved only if the credential still has the same
        consumer_id, secret_hash, client_type and redirect_uris; else ClientChanged."""

    async def take_code(self, digest: bytes, now: float) -> AuthCode | None:
        """Consume a code: returns it once, to exactly one caller, if unexpired."""

    # admin: lists, updates, bulk revocation ----------------------------------------------
    async def list_consumers(
        self, *, tags: TagFilter | None = None, after: str | None = None, size: int = 100
    ) -> Page[Consumer]:
        """Oldest first (created_at, then id); `after` is a cursor from a previous page.
        A malformed cursor raises StoreError (never a driver error)."""

    async def update_consumer(self, consumer_id: str, patch: ConsumerPatch) -> Consumer | None:
        """Apply the keys present in `patch`; None if no such consumer; Conflict on a clash.
        A changed username or custom_id (cached with every token as identity headers)
        announces, without revoking them, the access digests of the unrevoked tokens of the
        consumer's credentials and crypto.consumer_marker(consumer_id); other changes
        announce nothing."""

    async def list_credentials(
        self,
        *,
        consumer_id: str | None = None,
        tags: TagFilter | None = None,
        after: str | None = None,
        size: int = 100,
    ) -> Page[Credential]: ...

    async def update_credential(
        self, credential_id: str, patch: CredentialPatch
    ) -> Credential | None:
        """As update_consumer. A changed secret_hash or client_type revokes the credential's
        tokens (announced) and drops its codes, and removed redirect URIs drop their codes,
        as upsert_credential does; a changed client_id (cached with every token) announces,
        without revoking them, the access digests of the credential's unrevoked tokens."""

    async def list_tokens(
        self, which: TokenFilter, now: float, *, after: str | None = None, size: int = 100
    ) -> Page[TokenView]: ...

    async def get_token(self, token_id: str) -> TokenView | None: ...

    async def update_token(
        self, token_id: str, *, expires_at: float | bool | None = False, scope: str | None = None
    ) -> TokenView | None:
        """Change a token's expiry (`expires_at`: a time, None = never; False = unchanged) or
        scope (None = unchanged; a new scope is its refresh token's too: refresh_scope
        None). Announces the access digest (cached copies must re-read)."""

    async def revoke_tokens(self, which: TokenFilter, now: float) -> int:
        """Bulk revoke the live tokens matching `which`; returns rows revoked (an access token
        with its refresh token is one row); announces their digests."""

    # revocation log: how other processes learn of revocations -----------------------------
    async def revocation_head(self) -> int:
        """The sequence number of the newest revocation-log entry (0 if none)."""

    async def revocations_since(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """(seq, access_digest) entries with seq > `seq`, oldest first. Every call that kills
        a token (revoke_*, rotate_refresh, replace_access, deletes, upserts and updates that
        revoke) appends the killed access digests in the same transaction; so does every call
        that makes cached copies stale: update_token, identity changes (update_consumer,
        upsert_consumer, update_credential's client_id), and deletes and identity changes of
        a consumer also append its crypto.consumer_marker."""

    # housekeeping ------------------------------------------------------------------------
    async def sweep(self, now: float, grace_seconds: float = 3600.0) -> int:
        """Delete codes past expiry and tokens dead (expired or revoked, refresh included)
        for longer than `grace_seconds`; returns rows deleted."""
