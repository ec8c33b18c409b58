"""Prometheus metrics covering every worker (design §9), Kong's families under `edgeauth_`.

Rule 1: with several workers, prometheus-client's multiprocess mode (one mmap file per
process in a directory the supervisor creates) lets whichever worker answers /metrics report
the sum over all of them.
Rule 2: the hot path pays dict adds only: requests are tallied in plain dicts and moved into
the mmap-backed families by `flush()` every FLUSH_SECONDS (a multiprocess `inc()` takes a lock
and writes the mmap; per request that was 4 % of a proxied request's CPU). A valid token, the
one count of every validated request, is a plain integer add (`valid_tokens`).
Rule 3: per-consumer labels only with `metrics.per_consumer` (cardinality is the operator's
choice).
Rule 4: the supervisor's own figures (restarts, reloads) live in one text file in that same
directory, replaced whole on each change (write then rename), and appended by `exposition()`:
every /metrics, whoever serves it, reports the same figures.
Rule 5: one body for /metrics wherever it is served (admin API, status listener): `scrape()`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
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

from edgeauth import __version__, tls
from edgeauth.errors import OAUTH_ERROR_CODES
from edgeauth.exchange import Exchange
from edgeauth.oauth import ENDPOINTS
from edgeauth.oauth.grants import GRANTS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
FLUSH_SECONDS = 0.25
SUPERVISOR_FILE = "supervisor.prom"  # not *.db: the multiprocess collector never reads it

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
STREAM_CONNECTIONS = Counter(
    "edgeauth_stream_connections",
    'Stream connections, counted as they close, by stream ("" when none was chosen).',
    ["stream"],
)
STREAM_BYTES = Counter(
    "edgeauth_stream_bytes",
    "Stream bytes relayed, by stream and direction (ingress: from clients).",
    ["stream", "direction"],
)
STREAM_ACTIVE = Gauge(
    "edgeauth_stream_active", "Open stream connections.", ["stream"], multiprocess_mode="livesum"
)
STREAM_HANDSHAKE_FAILURES = Counter(
    "edgeauth_stream_handshake_failures",
    "Stream connections refused before relaying, by stream and reason.",
    ["stream", "reason"],
)


class Recorder:
    """What one worker records: tallied in dicts, flushed to the families periodically.

    OAuth label values come from the fixed sets below (the lists the OAuth code itself uses),
    anything else counts as "other", so no client text can add a series.
    """

    GRANT_LABELS = frozenset(grant.name for grant in GRANTS)
    ENDPOINT_LABELS = frozenset(ENDPOINTS)
    ERROR_LABELS = OAUTH_ERROR_CODES

    def __init__(self, enabled: bool, per_consumer: bool) -> None:
        self.enabled = enabled
        self.per_consumer = per_consumer
        self._children: dict[tuple[Any, ...], Any] = {}
        self._counts: dict[tuple[Any, ...], float] = {}
        # (histogram, service) -> per-bucket counts (the last bucket is +Inf), then the sum
        self._latency: dict[tuple[Any, str], list[float]] = {}
        self.valid_tokens = 0  # validations with result "valid" since the last flush

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

    def stream_closed(self, stream: str, failure: str | None) -> None:
        """One stream connection closed; `failure` is why it was refused before relaying."""
        if self.enabled:
            self._add((STREAM_CONNECTIONS, stream))
            if failure is not None:
                self._add((STREAM_HANDSHAKE_FAILURES, stream, failure))

    def stream_bytes(self, stream: str, ingress: int, egress: int) -> None:
        if self.enabled:
            if ingress:
                self._add((STREAM_BYTES, stream, "ingress"), ingress)
            if egress:
                self._add((STREAM_BYTES, stream, "egress"), egress)

    def stream_active(self, active: dict[str, int]) -> None:
        """Each stream's open connections in this worker (every configured stream, 0 too)."""
        if self.enabled:
            for stream, count in active.items():
                self._child(STREAM_ACTIVE, stream).set(count)

    def flush(self) -> None:
        """Move the tallies into the shared families (what /metrics reads)."""
        if self.valid_tokens:
            if self.enabled:
                self._add((VALIDATIONS, "valid"), self.valid_tokens)
            self.valid_tokens = 0
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


def exposition(extra: list[str], directory: str | None = None) -> bytes:
    """The text format: every worker's samples (multiprocess mode, from `directory` or the
    environment's) or this process's, then the build, the supervisor's figures and `extra`."""
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    lines = [*_build_lines(), *_supervisor_lines(directory), *extra]
    return body + ("\n".join(lines) + "\n").encode()


async def scrape(cert_file: Path, reachable: bool, directory: str | None = None) -> bytes:
    """The /metrics body, plus what the answering process checks itself: the store (whose
    ping the caller bounds) and the listener certificate."""
    extra = [
        "# HELP edgeauth_datastore_reachable Whether the store answers (1) or not (0).",
        "# TYPE edgeauth_datastore_reachable gauge",
        f"edgeauth_datastore_reachable {int(reachable)}",
        "# HELP edgeauth_tls_cert_expiry_timestamp_seconds End of the listener certificate.",
        "# TYPE edgeauth_tls_cert_expiry_timestamp_seconds gauge",
        f"edgeauth_tls_cert_expiry_timestamp_seconds {int(tls.expires_at(cert_file))}",
    ]
    return await asyncio.to_thread(exposition, extra, directory)


def _build_lines() -> list[str]:
    return [
        "# HELP edgeauth_build_info The running edgeauth version and Python; always 1.",
        "# TYPE edgeauth_build_info gauge",
        f'edgeauth_build_info{{version="{__version__}",python="{platform.python_version()}"}} 1',
    ]


def _supervisor_lines(directory: str | None) -> list[str]:
    if not directory:
        return []
    try:
        return (Path(directory) / SUPERVISOR_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []


@dataclass
class SupervisorFigures:
    """What only the supervisor knows; `publish()` after each change (Rule 4)."""

    restarts: int = 0
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    # set at start as Prometheus does: the running config was loaded successfully then
    last_reload_success: float = field(default_factory=time.time)

    def reloaded(self, ok: bool) -> None:
        self.reloads["success" if ok else "failure"] += 1
        if ok:
            self.last_reload_success = time.time()

    def lines(self) -> list[str]:
        return [
            "# HELP edgeauth_worker_restarts_total Workers restarted after they died.",
            "# TYPE edgeauth_worker_restarts_total counter",
            f"edgeauth_worker_restarts_total {self.restarts}",
            "# HELP edgeauth_config_reloads_total Configuration reloads, by result.",
            "# TYPE edgeauth_config_reloads_total counter",
            *(
                f'edgeauth_config_reloads_total{{result="{result}"}} {count}'
                for result, count in self.reloads.items()
            ),
            "# HELP edgeauth_config_last_reload_success_timestamp_seconds When the running"
            " configuration was loaded (start or last successful reload).",
            "# TYPE edgeauth_config_last_reload_success_timestamp_seconds gauge",
            f"edgeauth_config_last_reload_success_timestamp_seconds {self.last_reload_success:.3f}",
        ]

    def publish(self, directory: str) -> None:
        """Replace the figures file whole, so a reader never sees half of it."""
        path = Path(directory) / SUPERVISOR_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text("\n".join(self.lines()) + "\n")
        os.replace(temporary, path)


def process_dead(pid: int) -> None:
    """Let live gauges of a dead worker go (its counters stay summed)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
