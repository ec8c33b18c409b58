"""Helpers the scenarios share: the usual targets, load specs and summaries."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable

from benchmarks.loadgen import LoadSpec
from benchmarks.results import Measurement, ScenarioResult, Skip
from benchmarks.runner import PROTECTED_PATH, STATIC, Bench, Server


def baselines(
    bench: Bench,
    result: ScenarioResult,
    gateway: Server,
    backend: str = STATIC,
    floor: bool = False,
) -> list[Server]:
    """direct, nginx (when installed), the floor proxy (if asked), naive, then edgeauth, all in
    front of `backend`: the order they are measured in."""
    found = [bench.direct(backend)]
    try:
        found.append(bench.nginx(backend))
    except Skip as exc:
        result.notes.append(f"nginx baseline not measured: {exc}")
        result.summary["nginx"] = f"not measured: {exc}"
    if floor:
        found.append(bench.floor(backend))
    found.append(bench.naive(backend))
    found.append(gateway)
    return found


def saturated(result: ScenarioResult, *targets: str) -> str:
    """A note naming the runs of these targets whose generator cores passed the limit."""
    hot = sorted(
        {
            f"{m.target} at {m.generator_busy_percent:g} %"
            for m in result.measurements
            if m.generator_saturated and m.target in targets
        }
    )
    return f"generator saturated: {', '.join(hot)}" if hot else ""


def get_spec(bench: Bench, target: Server, path: str = PROTECTED_PATH, **extra: object) -> LoadSpec:
    """A closed-loop GET of `path` with the target's token (if it checks one)."""
    p = bench.profile
    spec = LoadSpec(
        url=target.url(path),
        duration=p.duration,
        connections=p.connections,
        warmup=p.warmup,
        tokens=[target.token] if target.token else [],
    )
    for key, value in extra.items():
        setattr(spec, key, value)
    return spec


def median_of(
    result: ScenarioResult, target: str, label: str, get: Callable[[Measurement], float | None]
) -> float | None:
    values = [v for m in result.by_target(target, label) if (v := get(m)) is not None]
    return round(statistics.median(values), 3) if values else None


def p99(m: Measurement) -> float | None:
    return m.latency.p99 if m.latency else None


def at(percentiles: list[tuple[float, float]] | list[list[float]], p: float) -> float:
    """Latency at percentile p, interpolated on a (percentile, ms) grid."""
    table = sorted((float(a), float(b)) for a, b in percentiles)
    if not table:
        return 0.0
    if p <= table[0][0]:
        return table[0][1]
    for (p0, v0), (p1, v1) in itertools.pairwise(table):
        if p0 <= p <= p1:
            return v0 if p1 == p0 else v0 + (v1 - v0) * (p - p0) / (p1 - p0)
    return table[-1][1]
