"""OAuth 2.0: request parsing, client authentication, grants and bearer rules (pure), and
the thin handlers in routes.py."""
