"""OAuth 2.0: request parsing, client authentication, grants and bearer rules (pure), and
the thin handlers in routes.py.

ENDPOINTS is the one list of endpoint names: routes.py dispatches on it, and metrics.py labels
its series with it; the grants have theirs in grants.GRANTS. Imports nothing, so anything may
import it.
"""

ENDPOINTS = ("token", "authorize", "revoke", "introspect")
