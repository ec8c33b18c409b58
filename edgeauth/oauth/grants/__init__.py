"""The grant table: every grant a token is issued by, the policy switch that enables it, and
how a client asks for it. One table, so the token endpoint's dispatch, the metadata's
`grant_types_supported` and `response_types_supported`, and the metrics' grant labels can
never disagree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgeauth.oauth.grants import authorization_code, client_credentials, password, refresh_token
from edgeauth.oauth.grants.base import Grant
from edgeauth.oauth.policy import Policy


@dataclass(frozen=True, slots=True)
class GrantType:
    name: str
    enabled: Callable[[Policy], bool]
    exchange: Grant | None  # at the token endpoint; None: issued by the authorization endpoint
    response_type: str | None = None  # what asks for it at the authorization endpoint


GRANTS: tuple[GrantType, ...] = (
    GrantType(
        "authorization_code",
        lambda p: p.settings.enable_authorization_code,
        authorization_code.exchange,
        "code",
    ),
    GrantType(
        "client_credentials",
        lambda p: p.settings.enable_client_credentials,
        client_credentials.exchange,
    ),
    GrantType("password", lambda p: p.settings.enable_password_grant, password.exchange),
    GrantType("refresh_token", lambda p: p.issues_refresh, refresh_token.exchange),
    GrantType("implicit", lambda p: p.settings.enable_implicit_grant, None, "token"),
)


def enabled_grants(policy: Policy) -> tuple[GrantType, ...]:
    return tuple(grant for grant in GRANTS if grant.enabled(policy))


def build_grants(policy: Policy) -> dict[str, Grant]:
    """The token endpoint's table: `grant_type` → exchange, the enabled grants only."""
    return {g.name: g.exchange for g in enabled_grants(policy) if g.exchange is not None}


def response_types(policy: Policy) -> list[str]:
    """What the authorization endpoint answers: `code`, `token`, both or neither."""
    return [g.response_type for g in enabled_grants(policy) if g.response_type is not None]
