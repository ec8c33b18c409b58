"""Baselines measured in the same run as edgeauth: nginx as a TLS reverse proxy, and the naive
aiohttp proxy (the Python peer to beat)."""
