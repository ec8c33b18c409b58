"""The single exception hierarchy of edgeauth.

Every error the gateway can answer with is a subclass of EdgeAuthError carrying its HTTP
status; foreign exceptions (aiohttp, OS, sqlite) are translated into these at one boundary
per module. Rendering to bodies and headers lives in rendering.py, never here.
Imports nothing of ours.
"""

from __future__ import annotations


class EdgeAuthError(Exception):
    """Base of every error edgeauth raises on purpose."""

    status: int = 500
    message: str = "An unexpected error occurred"
    retry_after: int | None = None  # seconds, for answers that say when to come back

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class ConfigError(EdgeAuthError):
    """The configuration is unusable; carries every problem found, not just the first."""

    def __init__(self, problems: tuple[str, ...] | list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class ProxyError(EdgeAuthError):
    """Errors of the proxy path: rendered as Kong's `{"message": ...}` bodies."""


class BadPath(ProxyError):
    """A path that could escape its route or smuggle a separator (design §3)."""

    status = 400
    message = "Bad request"


class NoRoute(ProxyError):
    status = 404
    message = "no Route matched with those values"


class BodyTooLarge(ProxyError):
    status = 413
    message = "Request size limit exceeded"


class RequestTimeout(ProxyError):
    """The request body stopped moving (`body_timeout_seconds`) or did not arrive whole within
    `request_timeout_seconds`."""

    status = 408
    message = "Request timeout"


class BadRequestBody(ProxyError):
    """The request body broke its framing after the head was accepted."""

    status = 400
    message = "Bad request"


class TrailersTooLarge(ProxyError):
    """Chunked trailers or chunk extensions beyond the head limits."""

    status = 431
    message = "Request header fields too large"


class Overloaded(ProxyError):
    """Beyond `max_inflight_requests`: a fast refusal instead of an unbounded queue."""

    status = 503
    message = "The gateway is at capacity, retry shortly"
    retry_after = 1


class UpstreamError(ProxyError):
    status = 502
    message = "An invalid response was received from the upstream server"


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504
    message = "The upstream server is timing out"


class UpstreamBusy(ProxyError):
    """No connection to the service came free within `pool_timeout_seconds`."""

    status = 503
    message = "The upstream server is at capacity, retry shortly"
    retry_after = 1


class StoreError(EdgeAuthError):
    """Anything the store could not do; drivers' exceptions never escape the store."""


class StoreUnavailable(StoreError):
    status = 503
    message = "The data store is unavailable"


class ClientChanged(StoreError):
    """A token or code was not saved: its client changed (secret, type, owner or redirect
    URIs) or went away after the request was checked against it."""


class Conflict(StoreError):
    """A uniqueness rule would be broken: `table.column` already holds the value (the admin
    API names the column in Kong's 409). `message` defaults to the one both backends give."""

    status = 409
    message = "Unique constraint violation"

    def __init__(self, table: str, column: str, message: str | None = None) -> None:
        self.table = table
        self.column = column
        super().__init__(message or f"unique constraint failed: {table}.{column}")


class OAuthError(EdgeAuthError):
    """RFC 6749 §5.2 / RFC 6750 §3.1 errors: `error` code, status, fixed description.

    Descriptions are fixed texts (Kong's wording where the meaning is the same) and never
    echo the request.
    """

    error = "invalid_request"
    status = 400
    message = "The request is missing a parameter or is malformed"


class InvalidRequest(OAuthError):
    pass


class InvalidProvisionKey(InvalidRequest):
    error = "invalid_provision_key"
    message = "Invalid provision_key"


class InvalidAuthenticatedUser(InvalidRequest):
    error = "invalid_authenticated_userid"
    message = "Missing authenticated_userid parameter"


class InvalidMethod(OAuthError):
    error = "invalid_method"
    status = 405
    message = "The HTTP method is not allowed for this endpoint"


class RequestTooLarge(InvalidRequest):
    status = 413
    message = "The request body is too large"


class InvalidClient(OAuthError):
    """401 with a Basic challenge when the client tried Basic, else 400 (RFC 6749 §5.2)."""

    error = "invalid_client"
    message = "Invalid client authentication"

    def __init__(self, message: str | None = None, *, basic: bool = False) -> None:
        super().__init__(message)
        self.basic = basic
        self.status = 401 if basic else 400


class ClientThrottled(OAuthError):
    """Too many failed client authentications for this client_id or source address.

    `invalid_client` because client authentication is what did not happen; 429 with
    `Retry-After` (RFC 6585 §4) because it is temporary. Answered before any PBKDF2 run.
    """

    error = "invalid_client"
    status = 429
    message = "Too many failed client authentications, retry later"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    message = "The grant is invalid, expired or revoked"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    message = "The client is not allowed to use this grant type"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    message = "Invalid grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    message = "Invalid response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"
    message = "The requested scope is invalid"


class AccessDenied(OAuthError):
    error = "access_denied"
    message = "You must use HTTPS"


class TemporarilyUnavailable(OAuthError):
    """The store cannot be reached: answer 503, never guess (design §4.5, §8)."""

    error = "temporarily_unavailable"
    status = 503
    message = "The service is temporarily unavailable, retry shortly"
    retry_after = 1


class MissingToken(OAuthError):
    """No credential at all: a bare challenge without an error attribute (RFC 6750 §3.1)."""

    status = 401
    message = "The access token is missing"


class InvalidToken(OAuthError):
    error = "invalid_token"
    status = 401
    message = "The access token is invalid or has expired"


class InsufficientScope(OAuthError):
    error = "insufficient_scope"
    status = 403
    message = "The access token does not carry the scope this route requires"

    def __init__(self, required: tuple[str, ...]) -> None:
        super().__init__()
        self.required = required


def _codes(cls: type[OAuthError]) -> frozenset[str]:
    return frozenset({cls.error}).union(*(_codes(sub) for sub in cls.__subclasses__()))


# Every OAuth `error` code an answer can carry: the classes above, the whole hierarchy.
OAUTH_ERROR_CODES = _codes(OAuthError)


class AdminError(EdgeAuthError):
    """Admin API errors, rendered with Kong's bodies."""


class NotFound(AdminError):
    status = 404
    message = "Not found"


class AdminUnauthorized(AdminError):
    status = 401
    message = "Invalid authentication credentials"


class PayloadTooLarge(AdminError):
    status = 413
    message = "Payload too large"


class BadRequest(AdminError):
    status = 400


class SchemaViolation(AdminError):
    """Kong's `{"code": 2, "name": "schema violation", "message", "fields"}` body."""

    status = 400

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields
        parts = [f"{name}: {_flat(problem)}" for name, problem in fields.items()]
        count = len(parts)
        noun = "schema violation" if count == 1 else "schema violations"
        super().__init__(f"{count} {noun} ({'; '.join(parts)})")


class UniqueViolation(AdminError):
    """Kong's 409 body for a clash on a unique field."""

    status = 409

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"UNIQUE violation detected on '{{{field}=\"{value}\"}}'")


def _flat(problem: object) -> str:
    if isinstance(problem, list):
        return ", ".join(f"[{i + 1}] {p}" for i, p in enumerate(problem) if p is not None)
    return str(problem)
