"""The seed walkthrough's world: a protected events service, ClientApp and its apps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway, service

PROVISION_KEY = "pk-" + "k" * 40
SECRET = "s3cr3t:with%colon"  # a secret that needs form-encoding in Basic auth
KONG_SECRET = "tofu"
KONG_HASH = (
    "$pbkdf2-sha512$i=10000,l=32$YSBsaXR0ZSBiaXQsIGp1c3QgYSBsaXR0bGUgYml0"
    "$z6ysNworexAhDELywIDi0ba0B0T7F/MBZ6Ige9lWRYI"
)


@dataclass
class OAuthWorld:
    gw: RunningGateway
    backend: Backend

    @property
    def token_url(self) -> str:
        return f"{self.gw.url}/events/oauth2/token"

    @property
    def api_url(self) -> str:
        return f"{self.gw.url}/events"


def events_service(backend: Backend, **oauth2: Any) -> dict[str, Any]:
    """The protected events service: password and client_credentials grants enabled."""
    policy: dict[str, Any] = {
        "scopes": ["read", "write"],
        "provision_key": PROVISION_KEY,
        "enable_password_grant": True,
        "enable_client_credentials": True,
        **oauth2,
    }
    return service("events", backend.url + "/api", ["/events"], strip_path=False, oauth2=policy)


def consumers(tmp_path: Path) -> list[dict[str, Any]]:
    secret_file = tmp_path / "clientapp.secret"
    secret_file.write_text(SECRET + "\n")
    return [
        {
            "username": "ClientApp",
            "custom_id": "client-app-1",
            "oauth2": [
                {
                    "name": "SampleApp",
                    "client_id": "clientid",
                    "client_secret_file": str(secret_file),
                    "redirect_uris": ["https://app.example/callback"],
                },
                {
                    "name": "KongImported",
                    "client_id": "kongclient",
                    "client_secret_hash": KONG_HASH,
                    "redirect_uris": ["https://kong.example/cb"],
                },
                {
                    "name": "MobileApp",
                    "client_id": "publicclient",
                    "client_type": "public",
                    "redirect_uris": ["https://mobile.example/cb"],
                },
            ],
        },
        {
            "username": "Other",
            "oauth2": [
                {
                    "name": "OtherApp",
                    "client_id": "otherclient",
                    "client_secret": "other-secret",
                    "redirect_uris": ["https://other.example/cb"],
                }
            ],
        },
    ]


@pytest.fixture
async def world(backend: Backend, gateway: GatewayFactory, tmp_path: Path) -> OAuthWorld:
    """A running gateway with the walkthrough's config (defaults of design §2 otherwise)."""
    gw = await gateway([events_service(backend)], consumers=consumers(tmp_path))
    return OAuthWorld(gw, backend)
