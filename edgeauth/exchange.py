"""What one request did, gathered along its way and written as one access-log line.

Rule 1: every answered request carries the status and body size the client was sent.
Rule 2: text a client chose (a claimed client_id, a grant_type) enters a field only through
`clip()`, so one request cannot write an unbounded line; secrets, tokens and codes never do.
Rule 3: nothing writes to an Exchange once the gateway has logged it: the access log keeps it
and formats its line later, with its batch.
"""

from __future__ import annotations

from typing import Any

CLIP_CHARS = 128


def _ms(x: float) -> float:
    """round(x, 3), skipping its decimal conversion where the answer is plain: for 0 < x < 1e6
    the product x * 1000 + 0.5 is within 1e-6 of exact, so unless its fraction is that close to
    0 (a tie) it floors to the rounded thousandths, and r / 1000 is the float nearest them.
    y - y % 1.0 is that floor, exactly (cheaper than int(y), and the same quotient)."""
    if 0.0 < x < 1e6:
        y = x * 1000.0 + 0.5
        r = y - y % 1.0
        if 1e-6 < y - r < 0.999999:
            return r / 1000.0
    return round(x, 3)


def clip(text: str | None) -> str | None:
    """`text` cut to CLIP_CHARS characters, a cut one marked with a trailing "…"."""
    if text is None or len(text) <= CLIP_CHARS:
        return text
    return text[:CLIP_CHARS] + "…"


class Exchange:
    """Mutable per-request record; slotted so that it costs one small allocation."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "client_id",
        "client_ip",
        "consumer",
        "error",
        "grant_type",
        "logged_ns",
        "method",
        "path",
        "request_id",
        "route",
        "service",
        "started",
        "status",
        "tls_version",
        "total_ms",
        "upstream_ms",
    )

    def __init__(self, method: str, started: float) -> None:
        self.method = method
        self.started = started
        self.request_id = ""
        self.client_ip = ""
        self.path = ""
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_ms: float | None = None
        self.total_ms = 0.0
        self.service: str | None = None
        self.route: str | None = None
        self.consumer: str | None = None
        self.client_id: str | None = None
        self.tls_version: str | None = None
        self.error: str | None = None
        self.grant_type: str | None = None
        self.logged_ns = 0  # wall clock, set by the access log

    def finish(self, now: float) -> None:
        self.total_ms = (now - self.started) * 1000

    def entry(self, worker: int) -> dict[str, Any]:
        """The access-log fields of design §9 (tokens and query strings never included);
        `grant_type` and `error` only when known."""
        total = self.total_ms
        upstream = self.upstream_ms
        entry: dict[str, Any] = {
            "level": "info",
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "latency_ms": {
                "total": _ms(total),
                "edge": _ms(total - (upstream or 0.0)),
                "upstream": None if upstream is None else _ms(upstream),
            },
            "service": self.service,
            "route": self.route,
            "consumer": self.consumer,
            "client_id": self.client_id,
            "tls_version": self.tls_version,
            "worker": worker,
        }
        if self.grant_type is not None:
            entry["grant_type"] = self.grant_type
        if self.error is not None:
            entry["error"] = self.error
        return entry
