"""edgeauth: an OAuth 2.0 edge gateway (TLS, token service, streaming reverse proxy)."""

__version__ = "0.1.0"
