"""Prometheus metrics covering every worker (design §9), Kong's families under `edgeauth_`.

Rule 1: with several workers, prometheus-client's multiprocess mode (one mmap file per
process in a directory the supervisor creates) lets whichever worker answers /metrics report
the sum over all of them.
Rule 2: the hot path pays a dict lookup and an add: label children are cached per key.
Rule 3: per-consumer labels only with `metrics.per_consumer` (cardinality is the operator's
choice).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from edgeauth.exchange import Exchange

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

REQUESTS = Counter(
    "edgeauth_http_requests",
    "Requests answered, by service, route, status code and who answered (upstream or edgeauth).",
    ["service", "route", "code", "source", "consumer"],
)
REQUEST_LATENCY = Histogram(
    "edgeauth_request_latency_ms", "Whole request latency (ms).", ["service"], buckets=BUCKETS_MS
)
UPSTREAM_LATENCY = Histogram(
    "edgeauth_upstream_latency_ms",
    "Upstream time to headers (ms).",
    ["service"],
    buckets=BUCKETS_MS,
)
EDGE_LATENCY = Histogram(
    "edgeauth_edge_latency_ms",
    "Time spent in edgeauth itself (ms).",
    ["service"],
    buckets=BUCKETS_MS,
)
BANDWIDTH = Counter("edgeauth_bandwidth_bytes", "Body bytes, by direction.", ["direction"])
CONNECTIONS = Gauge(
    "edgeauth_connections", "Open downstream connections.", ["state"], multiprocess_mode="livesum"
)
TOKENS_ISSUED = Counter(
    "edgeauth_tokens_issued", "Tokens issued, by service and grant.", ["service", "grant_type"]
)
VALIDATIONS = Counter(
    "edgeauth_token_validations", "Bearer validations on the proxy path, by result.", ["result"]
)
CACHE_ENTRIES = Gauge(
    "edgeauth_token_cache_entries", "Validated tokens cached.", multiprocess_mode="livesum"
)


class Recorder:
    """What one worker records; children are bound once per label set."""

    def __init__(self, enabled: bool, per_consumer: bool) -> None:
        self.enabled = enabled
        self.per_consumer = per_consumer
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def request(self, ex: Exchange) -> None:
        if not self.enabled:
            return
        service = ex.service or ""
        source = "upstream" if ex.upstream_ms is not None else "edgeauth"
        consumer = (ex.consumer or "") if self.per_consumer else ""
        code = str(ex.status)
        self._child(REQUESTS, service, ex.route or "", code, source, consumer).inc()
        total = ex.total_ms
        self._child(REQUEST_LATENCY, service).observe(total)
        if ex.upstream_ms is not None:
            self._child(UPSTREAM_LATENCY, service).observe(ex.upstream_ms)
        self._child(EDGE_LATENCY, service).observe(max(0.0, total - (ex.upstream_ms or 0.0)))
        if ex.bytes_in:
            self._child(BANDWIDTH, "ingress").inc(ex.bytes_in)
        if ex.bytes_out:
            self._child(BANDWIDTH, "egress").inc(ex.bytes_out)

    def validation(self, result: str) -> None:
        if self.enabled:
            self._child(VALIDATIONS, result).inc()

    def issued(self, service: str, grant_type: str) -> None:
        if self.enabled:
            self._child(TOKENS_ISSUED, service, grant_type).inc()

    def gauges(self, connections: int, inflight: int, cache_entries: int) -> None:
        if self.enabled:
            self._child(CONNECTIONS, "active").set(inflight)
            self._child(CONNECTIONS, "idle").set(max(0, connections - inflight))
            CACHE_ENTRIES.set(cache_entries)


def exposition(extra: list[str]) -> bytes:
    """The text format: every worker's samples (multiprocess mode) or this process's."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return body + ("\n".join(extra) + "\n").encode()


def process_dead(pid: int) -> None:
    """Let live gauges of a dead worker go (its counters stay summed)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
