"""Thin handlers for the OAuth endpoints under a protected route (design §4).

Order of checks (design §4.6): method → HTTPS rule → body size and parse → the endpoint.
Client authentication counts failures per client_id and per source address: the peer, or
behind a trusted proxy the client address it reports.
Every answer, success or error, is JSON with `Cache-Control: no-store` and `Pragma: no-cache`.
Every answer is recorded on the request's Exchange (the client_id claimed, the token
endpoint's grant_type, the OAuth error code, body bytes read) and counted: each token issued,
each OAuth error answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from edgeauth import rendering
from edgeauth.crypto import SecretMemo
from edgeauth.errors import (
    AccessDenied,
    InvalidMethod,
    NoRoute,
    OAuthError,
    RequestTooLarge,
    StoreError,
    TemporarilyUnavailable,
)
from edgeauth.exchange import Exchange, clip
from edgeauth.messages import Request, Response, read_capped
from edgeauth.oauth import ENDPOINTS
from edgeauth.oauth.authorize import AuthorizeEndpoint, Redirected
from edgeauth.oauth.client_auth import credentials_from
from edgeauth.oauth.grants import enabled_grants, response_types
from edgeauth.oauth.introspect import Introspection, Revocation
from edgeauth.oauth.params import MAX_BODY_BYTES, Params, parse_body, refuse_secrets_in_query
from edgeauth.oauth.policy import Policy
from edgeauth.oauth.throttle import Throttle
from edgeauth.oauth.token_endpoint import ClientAuthenticator, TokenEndpoint
from edgeauth.proxy.headers import IPNetwork, Peer, forwarded
from edgeauth.routing import Router, normalize_path
from edgeauth.store.base import Store

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
WELL_KNOWN = "/.well-known/oauth-authorization-server"


class Tally(Protocol):
    """Where the endpoints count what they did (metrics.Recorder)."""

    def issued(self, service: str, grant_type: str) -> None: ...

    def oauth_error(self, service: str, endpoint: str, error: str) -> None: ...


def endpoint_of(path: str) -> str | None:
    """`token` for `.../oauth2/token` (trailing slash allowed), else None."""
    trimmed = path[:-1] if path.endswith("/") else path
    _, sep, tail = trimmed.rpartition("/oauth2/")
    return tail if sep and tail in ENDPOINTS else None


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def says_http(protos: list[str]) -> bool:
    """Whether any X-Forwarded-Proto value, comma lists included, says the hop was plain HTTP."""
    return any(value.strip().lower() == "http" for proto in protos for value in proto.split(","))


def check_https(request: Request, peer: Peer, policy: Policy) -> None:
    """HTTPS on every hop: a trusted proxy that says the client came over plain HTTP is
    refused even over TLS; plain HTTP only behind a trusted proxy that says, once, that it
    terminated TLS."""
    protos = request.headers.getall("X-Forwarded-Proto", [])
    if peer.trusted and says_http(protos):
        raise AccessDenied()
    if peer.scheme == "https":
        return
    if (
        policy.settings.accept_http_if_already_terminated
        and peer.trusted
        and len(protos) == 1
        and protos[0].strip().lower() == "https"
    ):
        return
    raise AccessDenied()


async def read_body(request: Request, ex: Exchange) -> bytes:
    """The whole body, refusing anything over MAX_BODY_BYTES without buffering it; what was
    read, refused or not, is counted in `ex.bytes_in`."""

    def count(size: int) -> None:
        ex.bytes_in += size

    return await read_capped(request, MAX_BODY_BYTES, RequestTooLarge, count)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The OAuth endpoints of one protected service."""

    policy: Policy
    auth: ClientAuthenticator
    token: TokenEndpoint
    authorize: AuthorizeEndpoint
    revocation: Revocation
    introspection: Introspection
    trusted_proxies: tuple[IPNetwork, ...]

    @classmethod
    def build(
        cls,
        policy: Policy,
        store: Store,
        memo: SecretMemo,
        trusted_proxies: tuple[IPNetwork, ...],
    ) -> Endpoints:
        s = policy.settings
        throttle = Throttle(s.max_failed_client_auth, s.failed_client_auth_window_seconds)
        auth = ClientAuthenticator(store, memo, throttle)
        return cls(
            policy,
            auth,
            TokenEndpoint.build(policy, auth),
            AuthorizeEndpoint(policy, store),
            Revocation(policy, store),
            Introspection(policy, store),
            trusted_proxies,
        )

    def source_of(self, request: Request, peer: Peer) -> str:
        """The client's address: the peer's, or behind a trusted proxy the one it reports."""
        return forwarded(peer, request.headers, None, self.trusted_proxies).real_ip

    async def answer(
        self,
        name: str,
        params: Params,
        authorization: str | None,
        source: str,
        ex: Exchange,
        now: float,
    ) -> dict[str, Any]:
        """The success body of endpoint `name`; raises OAuthError or Redirected. The client_id
        the request claims goes to `ex` before it is checked, so a refusal names it too; one
        from Basic credentials that could not be read is never logged (it may be a secret).
        Expiry is judged at `now`, the gateway's clock."""
        if name == "authorize":
            ex.client_id = clip(params.get("client_id"))
            return await self.authorize.authorize(params, now)
        creds = credentials_from(authorization, params)
        ex.client_id = clip(creds.client_id)
        if name == "token":
            return await self.token.issue(params, creds, source, now)
        client = await self.auth.authenticate(creds, source)
        if name == "revoke":
            return await self.revocation.revoke(params, client, now)
        return await self.introspection.introspect(params, client, now)


async def handle(
    request: Request,
    name: str,
    endpoints: Endpoints,
    peer: Peer,
    ex: Exchange,
    tally: Tally,
    clock: Callable[[], float],
) -> Response:
    """Answer one OAuth endpoint request; never forwarded upstream. Time is read from `clock`
    once the body is in: a slow upload must not stretch a code's or token's life."""
    policy = endpoints.policy
    state: str | None = None
    try:
        if request.method != "POST":
            raise InvalidMethod()
        check_https(request, peer, policy)
        params = parse_body(request.headers.get("Content-Type", ""), await read_body(request, ex))
        state = params.get("state")
        if name == "token":
            ex.grant_type = clip(params.get("grant_type"))
        refuse_secrets_in_query(request.raw_path.partition("?")[2])
        try:
            body = await endpoints.answer(
                name,
                params,
                request.headers.get("Authorization"),
                endpoints.source_of(request, peer),
                ex,
                clock(),
            )
        except StoreError as exc:
            raise TemporarilyUnavailable() from exc
        issued = _issued_grant(name, params)
        if issued is not None:
            tally.issued(policy.service, issued)
        return json_response(200, body)
    except Redirected as exc:
        _refused(ex, tally, policy.service, name, exc.error)
        return json_response(400, exc.body())
    except OAuthError as exc:
        _refused(ex, tally, policy.service, name, exc)
        body_state = state if name == "token" else None
        resp = json_response(
            exc.status,
            rendering.body(exc, body_state),
            rendering.headers(exc, policy.settings.realm),
        )
        if not request.content.is_eof():
            resp.force_close()
        return resp


def _issued_grant(name: str, params: Params) -> str | None:
    """The grant a successful answer issued a token by: every token endpoint success does;
    at the authorization endpoint only `response_type=token` (implicit), `code` issues none."""
    if name == "token":
        return params.get("grant_type", "")
    if name == "authorize" and params.get("response_type") == "token":
        return "implicit"
    return None


def _refused(ex: Exchange, tally: Tally, service: str, name: str, exc: OAuthError) -> None:
    ex.error = exc.error
    tally.oauth_error(service, name, exc.error)


def metadata(policy: Policy, issuer: str) -> dict[str, Any]:
    """RFC 8414 authorization server metadata for one protected route prefix. "none" is
    listed for every endpoint: a public client authenticates with its client_id alone at
    the token, revocation and introspection endpoints alike (client_auth.secret_check)."""
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    answers = response_types(policy)
    document: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "grant_types_supported": sorted(g.name for g in enabled_grants(policy)),
        "response_types_supported": answers,
        "scopes_supported": list(policy.settings.scopes),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
    }
    if answers:
        document["authorization_endpoint"] = f"{issuer}/oauth2/authorize"
    return document


def serve_metadata(
    router: Router,
    policies: dict[str, Policy],
    issuers: dict[str, str],
    host: str,
    prefix: str,
    ex: Exchange,
) -> Response:
    """RFC 8414 metadata of the protected route at `prefix` (design §4.4): only a route whose
    prefix is exactly `prefix` on a service with a policy has any, anything else is NoRoute."""
    target = router.match(host, "POST", normalize_path(prefix or "/"))
    policy = policies.get(target.service.name) if target is not None else None
    if target is None or policy is None or target.prefix != (prefix or "/"):
        raise NoRoute()
    ex.service = target.service.name
    ex.route = target.route.name
    return json_response(200, metadata(policy, issuers[target.service.name] + prefix))
