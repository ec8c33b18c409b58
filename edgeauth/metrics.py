"""Prometheus metrics covering every worker (design §9), Kong's families under `edgeauth_`.

Rule 1: with several workers, prometheus-client's multiprocess mode (one mmap file per
process in a directory the supervisor creates) lets whichever worker answers /metrics report
the sum over all of them.
Rule 2: the hot path pays dict adds only: requests are tallied in plain dicts and moved into
the mmap-backed families by `flush()` every FLUSH_SECONDS (a multiprocess `inc()` takes a lock
and writes the mmap; per request that was 4 % of a proxied request's CPU).
Rule 3: per-consumer labels only with `metrics.per_consumer` (cardinality is the operator's
choice).
"""

from __future__ import annotations

import os
from bisect import bisect_left
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
FLUSH_SECONDS = 0.25

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
    "edgeauth_oauth_tokens_issued",
    "Tokens issued, by service and grant.",
    ["service", "grant_type"],
)
OAUTH_ERRORS = Counter(
    "edgeauth_oauth_errors",
    "OAuth error answers, by service, endpoint (token, authorize, revoke, introspect) and error.",
    ["service", "endpoint", "error"],
)
VALIDATIONS = Counter(
    "edgeauth_token_validations", "Bearer validations on the proxy path, by result.", ["result"]
)
CACHE_ENTRIES = Gauge(
    "edgeauth_token_cache_entries", "Validated tokens cached.", multiprocess_mode="livesum"
)


class Recorder:
    """What one worker records: tallied in dicts, flushed to the families periodically.

    OAuth label values come from the fixed sets below, anything else counts as "other", so
    no client text can add a series.
    """

    GRANT_LABELS = frozenset(
        {"authorization_code", "client_credentials", "implicit", "password", "refresh_token"}
    )
    ENDPOINT_LABELS = frozenset({"token", "authorize", "revoke", "introspect"})
    # Every `error` of errors.OAuthError's subclasses (tests/oauth check that they match).
    ERROR_LABELS = frozenset(
        {
            "access_denied",
            "insufficient_scope",
            "invalid_authenticated_userid",
            "invalid_client",
            "invalid_grant",
            "invalid_method",
            "invalid_provision_key",
            "invalid_request",
            "invalid_scope",
            "invalid_token",
            "temporarily_unavailable",
            "unauthorized_client",
            "unsupported_grant_type",
            "unsupported_response_type",
        }
    )

    def __init__(self, enabled: bool, per_consumer: bool) -> None:
        self.enabled = enabled
        self.per_consumer = per_consumer
        self._children: dict[tuple[Any, ...], Any] = {}
        self._counts: dict[tuple[Any, ...], float] = {}
        # (histogram, service) -> per-bucket counts (the last bucket is +Inf), then the sum
        self._latency: dict[tuple[Any, str], list[float]] = {}

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def _add(self, key: tuple[Any, ...], amount: float = 1) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + amount

    def _observe(self, family: Any, service: str, value: float) -> None:
        pending = self._latency.get((family, service))
        if pending is None:
            pending = self._latency[(family, service)] = [0.0] * (len(BUCKETS_MS) + 2)
        pending[bisect_left(BUCKETS_MS, value)] += 1
        pending[-1] += value

    def request(self, ex: Exchange) -> None:
        if not self.enabled:
            return
        service = ex.service or ""
        upstream = ex.upstream_ms
        consumer = (ex.consumer or "") if self.per_consumer else ""
        source = "upstream" if upstream is not None else "edgeauth"
        self._add((REQUESTS, service, ex.route or "", str(ex.status), source, consumer))
        total = ex.total_ms
        self._observe(REQUEST_LATENCY, service, total)
        if upstream is not None:
            self._observe(UPSTREAM_LATENCY, service, upstream)
        self._observe(EDGE_LATENCY, service, max(0.0, total - (upstream or 0.0)))
        if ex.bytes_in:
            self._add((BANDWIDTH, "ingress"), ex.bytes_in)
        if ex.bytes_out:
            self._add((BANDWIDTH, "egress"), ex.bytes_out)

    def validation(self, result: str) -> None:
        if self.enabled:
            self._add((VALIDATIONS, result))

    def issued(self, service: str, grant_type: str) -> None:
        """One token issued; `implicit` for the authorization endpoint's."""
        if self.enabled:
            grant = grant_type if grant_type in self.GRANT_LABELS else "other"
            self._add((TOKENS_ISSUED, service, grant))

    def oauth_error(self, service: str, endpoint: str, error: str) -> None:
        """One OAuth error answer of an OAuth endpoint."""
        if self.enabled:
            where = endpoint if endpoint in self.ENDPOINT_LABELS else "other"
            code = error if error in self.ERROR_LABELS else "other"
            self._add((OAUTH_ERRORS, service, where, code))

    def flush(self) -> None:
        """Move the tallies into the shared families (what /metrics reads)."""
        counts, self._counts = self._counts, {}
        for (family, *labels), amount in counts.items():
            self._child(family, *labels).inc(amount)
        latency, self._latency = self._latency, {}
        for (family, service), pending in latency.items():
            child = self._child(family, service)
            # No bulk observe in prometheus-client: add to its bucket and sum values directly.
            for bucket, count in zip(child._buckets, pending, strict=False):
                if count:
                    bucket.inc(count)
            child._sum.inc(pending[-1])

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
