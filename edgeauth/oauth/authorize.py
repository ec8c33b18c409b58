"""The authorization endpoint, Kong style (design §4.2, order of checks §4.6).

The resource owner's backend calls it after authenticating the user itself, with the
service's provision key. Order: provision_key → authenticated_userid → client → redirect_uri
→ response_type → scope → PKCE. Until the redirect URI is known, errors are plain bodies and
never a redirect (RFC 6749 §4.1.2.1); after that they travel in the redirect URI (query for
`code`, fragment for `token`), inside Kong's `{"redirect_uri": ...}` answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode

from edgeauth import crypto
from edgeauth.errors import (
    ClientChanged,
    InvalidClient,
    InvalidRequest,
    OAuthError,
    UnsupportedResponseType,
)
from edgeauth.models import AuthCode, ClientType, Credential
from edgeauth.oauth import pkce, scopes
from edgeauth.oauth.grants import response_types
from edgeauth.oauth.grants.provisioned import authenticated_userid, check_provision_key
from edgeauth.oauth.issuer import Issue, mint, response_body
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy
from edgeauth.rendering import oauth_body
from edgeauth.store.base import Store

CODE_SECONDS = 60


def with_params(uri: str, params: Mapping[str, object], *, fragment: bool = False) -> str:
    """The registered URI with `params` added to its query (or set as its fragment), every
    value as text. The registered query's other parameters are kept byte for byte (RFC 6749
    §3.1.2); one named like a parameter we add (a stale `code`) is replaced, so the client
    reads only ours."""
    added = urlencode({name: str(value) for name, value in params.items()})
    if fragment:
        return f"{uri}#{added}"  # registered URIs never carry a fragment
    base, _, query = uri.partition("?")  # and so the query runs to the end
    pairs = query.split("&") if query else []
    kept = [pair for pair in pairs if _name(pair) not in params]
    return f"{base}?{'&'.join([*kept, added])}"


def _name(pair: str) -> str:
    return unquote_plus(pair.partition("=")[0])


def redirect_uri_of(params: Params, client: Credential) -> tuple[str, bool]:
    """(the redirect URI to use, whether the request named it); plain error if unregistered."""
    given = params.get("redirect_uri")
    if given is None:
        if not client.redirect_uris:
            raise InvalidRequest("The application has no redirect_uri")
        return client.redirect_uris[0], False
    if given not in client.redirect_uris:
        raise InvalidRequest("Invalid redirect_uri that does not match the application's")
    return given, True


class Redirected(Exception):
    """An error that goes back to the client through its redirect URI."""

    def __init__(self, error: OAuthError, uri: str, fragment: bool, state: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.uri = uri
        self.fragment = fragment
        self.state = state

    def body(self) -> dict[str, str]:
        params = oauth_body(self.error, self.state)
        return {"redirect_uri": with_params(self.uri, params, fragment=self.fragment)}


@dataclass(frozen=True, slots=True)
class AuthorizeEndpoint:
    policy: Policy
    store: Store

    async def authorize(self, params: Params, now: float) -> dict[str, Any]:
        """Kong's 200 `{"redirect_uri": ...}`; raises OAuthError (plain) or Redirected."""
        check_provision_key(params, self.policy)
        userid = authenticated_userid(params)
        client = await self.store.find_credential(params.get("client_id") or "")
        if client is None:
            raise InvalidClient()
        uri, named = redirect_uri_of(params, client)
        response_type = params.get("response_type")
        state = params.get("state")
        fragment = response_type == "token"
        try:
            return await self._grant(params, client, userid, uri if named else None, now, uri)
        except OAuthError as exc:
            raise Redirected(exc, uri, fragment, state) from exc
        except ClientChanged as exc:
            # The client changed while this request was answered (its redirect URIs may be
            # among the changes): a plain refusal, never a redirect.
            raise InvalidClient() from exc

    async def _grant(
        self,
        params: Params,
        client: Credential,
        userid: str,
        bound_uri: str | None,
        now: float,
        uri: str,
    ) -> dict[str, Any]:
        """The answer to a `response_type` whose grant is enabled (grants.GRANTS)."""
        response_type = params.get("response_type")
        if response_type not in response_types(self.policy):
            raise UnsupportedResponseType()
        s = self.policy.settings
        granted = scopes.grant(params.get("scope"), s.scopes, s.mandatory_scope)
        state = params.get("state")
        if response_type == "token":
            # RFC 6749 §4.2.2: the token endpoint's body, never a refresh token, as the fragment
            minted = mint(Issue(client, userid, granted, with_refresh=False), self.policy, now)
            await self.store.save_token(minted.record, client)
            body = response_body(minted, now, state)
            return {"redirect_uri": with_params(uri, body, fragment=True)}
        code = await self._save_code(params, client, userid, granted, bound_uri, now)
        reply = {"code": code} if state is None else {"code": code, "state": state}
        return {"redirect_uri": with_params(uri, reply)}

    async def _save_code(
        self,
        params: Params,
        client: Credential,
        userid: str,
        granted: tuple[str, ...],
        bound_uri: str | None,
        now: float,
    ) -> str:
        """A fresh code, kept by its digest for CODE_SECONDS with its PKCE challenge."""
        public = client.client_type is ClientType.PUBLIC
        challenge = pkce.challenge_of(params, public, self.policy.settings.pkce)
        code = crypto.mint()
        await self.store.save_code(
            AuthCode(
                digest=crypto.digest(code),
                credential_id=client.id,
                service=self.policy.service,
                authenticated_userid=userid,
                scope=scopes.join(granted),
                redirect_uri=bound_uri,
                code_challenge=challenge,
                code_challenge_method="S256" if challenge else None,
                created_at=now,
                expires_at=now + CODE_SECONDS,
            ),
            client,
        )
        return code
