"""Value types shared by the OAuth core, the store and the admin API. Frozen, no I/O.

Rule: records hold digests, never raw tokens, codes or secrets (design §7). A raw token
exists only in the response that hands it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The tag of consumers and applications declared in config.toml (`[[consumers]]`): config owns
# them, so the admin API refuses to change or delete them, and a reload changes only them.
MANAGED_TAG = "managed-by-config"


class ClientType(StrEnum):
    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Consumer:
    id: str
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...]
    created_at: int


@dataclass(frozen=True, slots=True)
class Credential:
    """An OAuth application (Kong's oauth2 credential) of a consumer."""

    id: str
    consumer_id: str
    name: str
    client_id: str
    secret_hash: str | None  # PBKDF2-SHA512 in Kong's PHC format; None for public clients
    redirect_uris: tuple[str, ...]
    client_type: ClientType
    tags: tuple[str, ...]
    created_at: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One access token, with its refresh token if any, as stored (digests only).

    `family_id` ties together every token descended from one grant, so that the reuse of
    a rotated refresh token can revoke them all (RFC 9700 §4.14.2).
    """

    id: str
    access_digest: bytes
    refresh_digest: bytes | None
    prefix: str  # the first characters of the access token, for operators to recognise it
    credential_id: str
    service: str | None  # None: issued under global_credentials, valid on such services
    authenticated_userid: str | None
    scope: str  # space-separated, possibly empty
    family_id: str
    created_at: float
    expires_at: float | None  # None: never expires
    refresh_expires_at: float | None  # None: the refresh token never expires
    revoked_at: float | None = None
    refresh_used_at: float | None = None  # set when the refresh token was rotated away
    # The refresh token's scope when it is wider than the access token's (a refresh that
    # narrowed the access token keeps the grant's scope for the next refresh, RFC 6749 §6);
    # None: the same as `scope`.
    refresh_scope: str | None = None


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token joined with its credential and consumer: everything validation needs."""

    token: TokenRecord
    client_id: str
    consumer_id: str
    username: str | None
    custom_id: str | None


@dataclass(frozen=True, slots=True)
class AuthCode:
    """An authorization code (RFC 6749 §4.1), stored by digest, single use."""

    digest: bytes
    credential_id: str
    service: str
    authenticated_userid: str | None
    scope: str
    redirect_uri: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    created_at: float
    expires_at: float
