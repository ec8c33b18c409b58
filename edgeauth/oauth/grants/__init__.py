"""The grant table: `grant_type` → exchange function, holding only the enabled grants."""

from __future__ import annotations

from edgeauth.oauth.grants import authorization_code, client_credentials, password, refresh_token
from edgeauth.oauth.grants.base import Grant
from edgeauth.oauth.policy import Policy


def build_grants(policy: Policy) -> dict[str, Grant]:
    """The grants a service's policy enables (design §4.1 table)."""
    s = policy.settings
    table: dict[str, Grant] = {}
    if s.enable_password_grant:
        table["password"] = password.exchange
    if s.enable_authorization_code:
        table["authorization_code"] = authorization_code.exchange
    if s.enable_client_credentials:
        table["client_credentials"] = client_credentials.exchange
    if policy.issues_refresh:
        table["refresh_token"] = refresh_token.exchange
    return table
