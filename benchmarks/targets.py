"""The targets of issues 17 (performance) and 18 (stream routes), in the order the report lists
them, and how a miss is sized.

Every target is judged on `make bench` (quick profile, one worker pinned, access log on) in
one run; a scenario records a check of target `key` with `ScenarioResult.judge`, once per
variant (e.g. download and upload). A target no check was recorded for is reported n/a,
with the reason (its scenario was not run, skipped or failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Goal:
    key: str
    scenario: str  # the scenario that measures it
    text: str
    op: Literal["≥", "≤"]
    limit: float
    unit: str = ""  # shown after the number: "x", " ms", " %"...
    digits: int = 2
    issue: int = 17  # the issue that set it: the report lists the targets by issue

    def show(self, value: float) -> str:
        return f"{value:,.{self.digits}f}{self.unit}"

    @property
    def goal(self) -> str:
        return f"{self.op} {self.show(self.limit)}"

    def passes(self, value: float) -> bool:
        return value >= self.limit if self.op == "≥" else value <= self.limit

    def miss(self, value: float) -> str:
        """How far `value` is from the goal, e.g. "needs ≥ 0.50x: 58 % short"."""
        if self.op == "≥":
            gap = f"{100 * (1 - value / self.limit):.0f} % short" if self.limit else ""
        elif self.limit:
            gap = f"{100 * (value / self.limit - 1):.0f} % over"
        else:
            gap = f"{self.show(value - self.limit)} over"
        return f"needs {self.goal}: {gap}"


GOALS: dict[str, Goal] = {
    g.key: g
    for g in (
        Goal("proxy/floor", "proxy", "proxy ≥ 0.5x the floor proxy (req/s)", "≥", 0.5, "x"),
        Goal("proxy/naive", "proxy", "proxy ≥ 3.5x the naive proxy (req/s)", "≥", 3.5, "x"),
        Goal("proxy/p99", "proxy", "proxy p99", "≤", 5.0, " ms"),
        Goal("proxy/errors", "proxy", "proxy errors", "≤", 0.0, "", 0),
        Goal(
            "validation",
            "public",
            "validation cost (protected vs public req/s, by CPU per request)",
            "≤",
            3.0,
            " %",
        ),
        Goal(
            "access-log",
            "accesslog",
            "access log cost (on vs off req/s, by CPU per request)",
            "≤",
            5.0,
            " %",
        ),
        Goal("issue/rate", "issue", "issue: client_credentials tokens/s", "≥", 5000.0, "/s", 0),
        Goal("issue/flat", "issue", "issue: tokens/s, empty vs pre-filled store", "≤", 10.0, " %"),
        Goal("invalid", "invalid", "invalid tokens: 401/s vs valid proxied req/s", "≥", 1.0, "x"),
        Goal("stream/nginx", "stream", "stream MB/s vs nginx", "≥", 0.9, "x"),
        Goal("stream/rss", "stream", "stream: RSS growth", "≤", 5.0, " MiB", 1),
        Goal("overload/p99", "overload", "overload: p99 of accepted requests", "≤", 50.0, " ms"),
        Goal(
            "overload/503",
            "overload",
            "overload: the rest a fast 503 (probe p99)",
            "≤",
            10.0,
            " ms",
        ),
        Goal("stream-tcp/nginx", "stream-tcp", "stream-tcp MB/s vs nginx", "≥", 0.9, "x", issue=18),
        Goal(
            "stream-tcp/rss",
            "stream-tcp",
            "stream-tcp: RSS growth of edgeauth per connection",
            "≤",
            2.0,
            " MiB",
            1,
            issue=18,
        ),
    )
}
