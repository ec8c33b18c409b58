"""Records for the store contract tests: uuid ids, SHA-256 digests of raw values the test
knows, so that "no raw token at rest" can be checked byte for byte."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from edgeauth.models import AuthCode, ClientType, Consumer, Credential, TokenRecord
from edgeauth.store.base import NewCredential, Store


def digest(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def hash_secret(secret: str) -> str:
    """Kong's PHC format, as the admin API stores secrets (design §6)."""
    salt = secrets.token_bytes(16)
    derived = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, 1000, 32)
    b64 = base64.b64encode
    return f"$pbkdf2-sha512$i=1000,l=32${b64(salt).decode()}${b64(derived).decode()}"


def new_credential(
    consumer_id: str,
    *,
    client_id: str | None = None,
    secret_hash: str | None = "$pbkdf2-sha512$i=1000,l=32$c2FsdA$aGFzaA",
    client_type: ClientType = ClientType.CONFIDENTIAL,
    name: str = "app",
) -> NewCredential:
    return NewCredential(
        consumer_id=consumer_id,
        name=name,
        client_id=client_id or f"client-{uuid.uuid4().hex[:12]}",
        secret_hash=secret_hash,
        redirect_uris=("https://app.example/cb", "https://app.example/cb2"),
        client_type=client_type,
        tags=("seed", "test"),
    )


@dataclass(frozen=True)
class Minted:
    """A token as the issuer hands it out (raw values) and as it is stored (record)."""

    access: str
    refresh: str | None
    record: TokenRecord


def mint(
    credential_id: str,
    now: float,
    *,
    family_id: str | None = None,
    refresh: bool = True,
    expires_in: float | None = 3600.0,
    refresh_expires_in: float | None = 86400.0,
    revoked_at: float | None = None,
) -> Minted:
    access = secrets.token_urlsafe(32)
    raw_refresh = secrets.token_urlsafe(32) if refresh else None
    record = TokenRecord(
        id=str(uuid.uuid4()),
        access_digest=digest(access),
        refresh_digest=digest(raw_refresh) if raw_refresh else None,
        prefix=access[:6],
        credential_id=credential_id,
        service="orders",
        authenticated_userid="alice",
        scope="read write",
        family_id=family_id or str(uuid.uuid4()),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        refresh_expires_at=(
            None if refresh_expires_in is None or not refresh else now + refresh_expires_in
        ),
        revoked_at=revoked_at,
    )
    return Minted(access, raw_refresh, record)


def auth_code(credential_id: str, now: float, *, expires_in: float = 60.0) -> tuple[str, AuthCode]:
    raw = secrets.token_urlsafe(32)
    return raw, AuthCode(
        digest=digest(raw),
        credential_id=credential_id,
        service="orders",
        authenticated_userid="alice",
        scope="read",
        redirect_uri="https://app.example/cb",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method="S256",
        created_at=now,
        expires_at=now + expires_in,
    )


class Announcements:
    """A revocation listener that records what it hears."""

    def __init__(self) -> None:
        self.batches: list[tuple[bytes, ...]] = []

    def __call__(self, digests: Sequence[bytes]) -> None:
        self.batches.append(tuple(digests))

    @property
    def digests(self) -> list[bytes]:
        return [d for batch in self.batches for d in batch]


@dataclass(frozen=True)
class App:
    consumer: Consumer
    credential: Credential


async def saved(store: Store, minted: Minted) -> Minted:
    await store.save_token(minted.record)
    return minted
