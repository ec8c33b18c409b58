"""The single exception hierarchy of edgeauth.

Every error the gateway can answer with is a subclass of EdgeAuthError carrying its HTTP
status; foreign exceptions (aiohttp, OS, sqlite) are translated into these at one boundary
per module. Rendering to a response body lives with the web layer, never here.
Imports nothing of ours.
"""

from __future__ import annotations


class EdgeAuthError(Exception):
    """Base of every error edgeauth raises on purpose."""

    status: int = 500
    message: str = "An unexpected error occurred"

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


class NotAuthenticated(ProxyError):
    """A protected service reached without a usable token: the proxy fails closed."""

    status = 401
    message = "The access token is missing"


class BodyTooLarge(ProxyError):
    status = 413
    message = "Request size limit exceeded"


class Overloaded(ProxyError):
    """Beyond `max_inflight_requests`: a fast refusal instead of an unbounded queue."""

    status = 503
    message = "The gateway is at capacity, retry shortly"


class UpstreamError(ProxyError):
    status = 502
    message = "An invalid response was received from the upstream server"


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504
    message = "The upstream server is timing out"
