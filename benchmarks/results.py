"""The records the harness produces: plain dataclasses that serialise to the raw JSON."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks.targets import GOALS

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
GENERATOR_LIMIT = 90.0  # % busy of the generator cores past which a run measured the generator
OTHERS_LIMIT = 20.0  # % of the server's cores used by other processes past which a run is shared
Status = Literal["ok", "failed", "skipped"]


@dataclass
class Latency:
    """Milliseconds."""

    p50: float
    p90: float
    p99: float
    p999: float
    mean: float = 0.0
    max: float = 0.0

    @staticmethod
    def of(samples_ms: list[float]) -> Latency | None:
        if not samples_ms:
            return None
        ordered = sorted(samples_ms)
        p50, p90, p99, p999 = (round(quantile(ordered, p), 3) for p in PERCENTILES)
        return Latency(
            p50, p90, p99, p999, mean=round(statistics.fmean(ordered), 3), max=round(ordered[-1], 3)
        )


def quantile(ordered: list[float], p: float) -> float:
    """The p-th percentile (0-100) of sorted values, nearest rank."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Measurement:
    """One load against one target: throughput, latency, errors and what the server cost."""

    target: str  # "edgeauth", "direct", "nginx", "naive", ...
    label: str  # what was measured, e.g. "GET /api/events" or "download 1 GiB"
    tool: str  # "wrk", "builtin", "builtin-open-loop", ...
    duration_s: float
    requests: int  # responses with an expected status
    errors: int  # socket errors + unexpected statuses
    statuses: dict[str, int]
    rps: float  # expected responses per second
    latency: Latency | None
    mb_per_s: float | None = None  # for streams, 10**6 bytes/s
    cpu_seconds: float | None = None  # of the server under test (its whole process tree)
    cpu_percent: float | None = None  # of one core
    cpu_us_per_request: float | None = None
    rss_start_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_hwm_mib: float | None = None
    core_busy: dict[str, float] = field(default_factory=dict)
    # mean busy % of the load generator's cores (None: unpinned, no cores of its own); past
    # GENERATOR_LIMIT the figure is the generator's, not the server's
    generator_busy_percent: float | None = None
    generator_saturated: bool = False
    # busy % of the server's cores not spent by the server under test (in % of one core): other
    # processes on the machine competing with it (None: unpinned)
    others_on_server_percent: float | None = None
    layout: str = ""
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """A target with the measured value; ok None = could not be judged. `key` names the
    issue's target it judges (targets.GOALS), "" for the harness's other checks; `miss` says
    by how much a judged value missed."""

    name: str
    value: float | None
    goal: str
    ok: bool | None
    note: str = ""
    key: str = ""
    miss: str = ""


@dataclass
class ScenarioResult:
    name: str
    description: str
    status: Status = "ok"
    reason: str = ""
    seconds: float = 0.0
    layout: str = ""
    measurements: list[Measurement] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def by_target(self, target: str, label: str | None = None) -> list[Measurement]:
        return [
            m
            for m in self.measurements
            if m.target == target and (label is None or m.label == label)
        ]

    def median_rps(self, target: str, label: str | None = None) -> float | None:
        found = [m.rps for m in self.by_target(target, label)]
        return statistics.median(found) if found else None

    def median_mbps(self, target: str, label: str | None = None) -> float | None:
        found = [m.mb_per_s for m in self.by_target(target, label) if m.mb_per_s is not None]
        return statistics.median(found) if found else None

    def check(
        self, name: str, value: float | None, goal: str, ok: bool | None, note: str = ""
    ) -> None:
        self.checks.append(Check(name, None if value is None else round(value, 3), goal, ok, note))

    def judge(self, key: str, value: float | None, variant: str = "", note: str = "") -> None:
        """A check of the issue's target `key` (targets.GOALS) against `value`."""
        goal = GOALS[key]
        ok = None if value is None else goal.passes(value)
        self.checks.append(
            Check(
                name=goal.text + (f" ({variant})" if variant else ""),
                value=None if value is None else round(value, 3),
                goal=goal.goal,
                ok=ok,
                note=note,
                key=key,
                miss=goal.miss(value) if ok is False and value is not None else "",
            )
        )


class Skip(Exception):
    """A scenario (or one of its targets) cannot run here; the message says why."""


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)
