"""Which client is calling, and is it who it says (RFC 6749 §2.3). Pure.

Rule 1: one method per request: HTTP Basic or `client_id` + `client_secret` in the body,
never both (§2.3); a body `client_id` beside Basic must name the same client.
Rule 2: Basic credentials are form-decoded (§2.3.1); a secret that only matches undecoded is
accepted too, because Kong compares the raw value and its clients rarely encode. Basic
credentials that are not UTF-8 (decoded, or the client_id once form-decoded), or a client_id
with a NUL, are refused as failed client authentication (401, §5.2) before any lookup, never
guessed at with replacement characters.
Rule 3: a public client never sends a secret; a confidential one always does.
Rule 4: once a secret was sent, every refusal runs the same PBKDF2 work as a wrong secret for
a real client (`crypto.DUMMY_HASH` for unknown and public clients), so timing does not tell
which client_ids exist; a request without a secret is refused at once for every client_id.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

from edgeauth import crypto
from edgeauth.errors import InvalidClient, InvalidRequest
from edgeauth.models import ClientType, Credential
from edgeauth.oauth.params import Params


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    secrets: tuple[str, ...]  # candidate secrets to try, most standard first; () if none sent
    basic: bool


def _basic(header: str) -> tuple[str, tuple[str, ...]] | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        raw_id, sep, raw_secret = decoded.partition(":")
        client_id = unquote_plus(raw_id, errors="strict")
    except (binascii.Error, ValueError) as exc:  # non-ASCII input is a plain ValueError
        raise InvalidClient(basic=True) from exc
    if not sep or not raw_id or "\x00" in client_id:  # no client_id holds a NUL
        raise InvalidClient(basic=True)
    return client_id, _secrets(raw_secret)


def _secrets(raw: str) -> tuple[str, ...]:
    """The form-decoded secret first, then the raw one (Rule 2); the raw one alone when
    decoding changes nothing or would not give UTF-8."""
    try:
        secret = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        return (raw,)
    return (secret,) if secret == raw else (secret, raw)


def credentials_from(authorization: str | None, params: Params) -> ClientCredentials:
    """The client's claimed identity and secret(s); InvalidClient if there is none."""
    basic = _basic(authorization) if authorization else None
    body_id = params.get("client_id")
    body_secret = params.get("client_secret")
    if basic is not None:
        client_id, candidates = basic
        if body_secret is not None:
            raise InvalidRequest("Only one client authentication method may be used")
        if body_id is not None and body_id != client_id:
            raise InvalidRequest("Only one client authentication method may be used")
        return ClientCredentials(client_id, candidates, basic=True)
    if not body_id:
        raise InvalidClient()
    return ClientCredentials(body_id, (body_secret,) if body_secret is not None else (), False)


@dataclass(frozen=True, slots=True)
class SecretCheck:
    """What the sent secrets are verified against. `client` is who a match authenticates;
    None for the dummy, which is verified only to spend the same work and never succeeds."""

    encoded: str
    client: Credential | None


def secret_check(creds: ClientCredentials, client: Credential | None) -> Credential | SecretCheck:
    """The client itself when there is nothing to verify (a public client that rightly sent no
    secret); otherwise what to verify the secrets against. A missing secret is refused at once,
    the same for every client_id."""
    if not any(creds.secrets):
        if client is not None and client.client_type is ClientType.PUBLIC:
            return client
        raise InvalidClient(basic=creds.basic)
    if client is None or client.client_type is ClientType.PUBLIC or client.secret_hash is None:
        return SecretCheck(crypto.DUMMY_HASH, None)
    return SecretCheck(client.secret_hash, client)
