"""Baselines measured in the same run as edgeauth: nginx as a TLS reverse proxy, the floor
proxy (the least a TLS proxy with a token check costs in Python), the naive aiohttp proxy
(the Python peer to beat); and the static backend they all proxy to."""
