"""A protected service's OAuth policy, resolved once at start: settings plus secrets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeauth.config import OAuth2Settings


@dataclass(frozen=True, slots=True)
class Policy:
    service: str
    settings: OAuth2Settings
    provision_key: str

    @property
    def token_service(self) -> str | None:
        """The service a new token is bound to; None (global) under global_credentials."""
        return None if self.settings.global_credentials else self.service

    def accepts(self, token_service: str | None) -> bool:
        """Whether a token bound to `token_service` is valid on this service (design §5.3)."""
        if token_service is None:
            return self.settings.global_credentials
        return token_service == self.service

    def access_expiry(self, now: float) -> float | None:
        ttl = self.settings.token_expiration
        return now + ttl if ttl > 0 else None

    def refresh_expiry(self, now: float) -> float | None:
        ttl = self.settings.refresh_token_ttl
        return now + ttl if ttl > 0 else None

    @property
    def issues_refresh(self) -> bool:
        """Refresh tokens exist only beside expiring access tokens (design §2)."""
        s = self.settings
        return s.token_expiration > 0 and (s.enable_password_grant or s.enable_authorization_code)


def expires_in(expires_at: float | None, now: float) -> int | None:
    return None if expires_at is None else max(0, math.ceil(expires_at - now))
