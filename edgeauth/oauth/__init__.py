"""OAuth 2.0: request parsing, client authentication, grants and bearer rules (pure), and
the thin handlers in routes.py.

The names below are the one list of each kind: routes.py dispatches on ENDPOINTS, and
metrics.py labels its series with them. Imports nothing, so anything may import it.
"""

ENDPOINTS = ("token", "authorize", "revoke", "introspect")
# Every grant a token is issued by: the token endpoint's grant table (grants/__init__.py),
# and `implicit` for the authorization endpoint's `response_type=token`.
GRANT_TYPES = ("authorization_code", "client_credentials", "password", "refresh_token", "implicit")
