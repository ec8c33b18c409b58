"""How an error reads on the wire: its JSON body and the headers it calls for.

Rule 1: errors.py says what went wrong; this module alone says how that is written. The
gateway (server.py), the OAuth endpoints (oauth/routes.py) and the admin API (admin/http.py)
frame these bodies and headers in their own response types, and protocol.py's fixed answers
for requests that never got a head are built by `fixed_answer`.
Rule 2: OAuth errors have RFC 6749 §5.2 bodies and RFC 6750 §3 challenges; every other error
has Kong's bodies. Nothing here echoes the request.
"""

from __future__ import annotations

from edgeauth.errors import (
    EdgeAuthError,
    InsufficientScope,
    InvalidClient,
    InvalidMethod,
    InvalidToken,
    MissingToken,
    OAuthError,
    SchemaViolation,
    UniqueViolation,
)


def body(exc: EdgeAuthError, state: str | None = None) -> dict[str, object]:
    """The JSON body of any error; `state` is echoed by OAuth errors only (the token
    endpoint's, if sent)."""
    if isinstance(exc, OAuthError):
        return dict(oauth_body(exc, state))
    return kong_body(exc)


def oauth_body(exc: OAuthError, state: str | None = None) -> dict[str, str]:
    """RFC 6749 §5.2: the error code and its fixed description, and `state` if given."""
    found = {"error": exc.error, "error_description": exc.message}
    if state is not None:
        found["state"] = state
    return found


def kong_body(exc: EdgeAuthError) -> dict[str, object]:
    """Kong's bodies: `{"message": ...}`, with code, name and fields for the admin API's
    schema and unique violations."""
    if isinstance(exc, SchemaViolation):
        return {"code": 2, "name": "schema violation", "message": exc.message, "fields": exc.fields}
    if isinstance(exc, UniqueViolation):
        return {
            "code": 5,
            "name": "unique constraint violation",
            "message": exc.message,
            "fields": {exc.field: exc.value},
        }
    return {"message": exc.message}


def headers(exc: EdgeAuthError, realm: str = "edgeauth") -> dict[str, str]:
    """The headers `exc` calls for beyond the usual ones: Retry-After for what is temporary,
    Allow for a wrong method, or a challenge naming `realm`. No error calls for two."""
    if exc.retry_after is not None:
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, InvalidMethod):
        return {"Allow": "POST"}
    challenge = _challenge(exc, realm)
    return {} if challenge is None else {"WWW-Authenticate": challenge}


def _challenge(exc: EdgeAuthError, realm: str) -> str | None:
    """Basic when a client tried Basic (RFC 6749 §5.2), Bearer for a token's refusal (RFC
    6750 §3): bare when there was no token, with the error code when there was one."""
    if isinstance(exc, InvalidClient):
        return f'Basic realm="{realm}"' if exc.basic else None
    if isinstance(exc, MissingToken):
        return f'Bearer realm="{realm}"'
    if isinstance(exc, InvalidToken):
        return f'Bearer realm="{realm}", error="{exc.error}", error_description="{exc.message}"'
    if isinstance(exc, InsufficientScope):
        return f'Bearer realm="{realm}", error="{exc.error}", scope="{" ".join(exc.required)}"'
    return None


def fixed_answer(status: bytes, message: bytes) -> bytes:
    """A whole HTTP/1.1 answer with Kong's body that closes the connection: for refusals
    made before there is a request to hand to the gateway."""
    payload = b'{"message":"' + message + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + payload
    )
