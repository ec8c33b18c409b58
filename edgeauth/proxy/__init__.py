"""The proxy path: header rules (pure), upstream connection pools, and the request handler."""
