"""overload: 256 connections on one saturated worker (beyond the eight scenarios of the issue:
it checks the overload target). Run twice: with the configured `max_inflight_requests`, and
with a small cap so that load is shed with fast 503s.

wrk cannot split latency by status, so two figures are given: (1) an upper bound of the
accepted requests' p99 from wrk's whole distribution, taking the 503s as the fastest answers
(the overall quantile at f + 0.99 (1 - f), f = share of 503s); (2) a light open-loop probe
(built-in generator, 50 req/s) running during the flood, whose requests are timed per
status.

Every flood connection sends its next request as soon as it has an answer, a 503 included, so
the mean latency of all answers is the connections over the answers per second (Little's
law), whatever the gateway does; the summary gives it beside the figures.
"""

from __future__ import annotations

import threading
import time

from benchmarks.loadgen import LoadResult, LoadSpec, run_load
from benchmarks.results import Measurement, ScenarioResult
from benchmarks.runner import PROTECTED_PATH, Bench, Gateway
from benchmarks.scenarios.common import at
from edgeauth.config import ServerSettings

NAME = "overload"
DESCRIPTION = (
    "256 connections on one worker: p99 of accepted requests, and fast 503s beyond the cap"
)
PROBE_CONNECTIONS = 64  # opened as needed: enough that the probe itself never queues


def _probe(bench: Bench, gw: Gateway, delay: float, out: list[LoadResult]) -> None:
    p = bench.profile
    time.sleep(delay)
    spec = LoadSpec(
        url=gw.url(PROTECTED_PATH),
        duration=max(0.5, p.duration - 1.0),
        connections=PROBE_CONNECTIONS,
        tokens=[gw.token or ""],
        rate=max(10.0, p.open_loop_rate / 20),
        expect=(200, 503),
    )
    out.append(run_load(spec, bench.procs, bench.workdir, bench.layout.generator, tool="builtin"))


def _flood(bench: Bench, gw: Gateway, label: str) -> tuple[Measurement, LoadResult | None]:
    p = bench.profile
    spec = LoadSpec(
        url=gw.url(PROTECTED_PATH),
        duration=p.duration,
        connections=p.overload_connections,
        warmup=p.warmup,
        tokens=[gw.token or ""],
        expect=(200,),
        count_statuses=True,
    )
    probes: list[LoadResult] = []
    probe = threading.Thread(target=_probe, args=(bench, gw, p.warmup + 1.0, probes), daemon=True)
    probe.start()
    try:
        m = bench.measure(gw, label, spec)
    finally:
        probe.join()
    return m, (probes[0] if probes else None)


def run(bench: Bench, result: ScenarioResult) -> None:
    p = bench.profile
    default_cap = ServerSettings().max_inflight_requests
    result.notes.append("errors column: 503 answers (load shed), not failures")
    caps = [default_cap] if p.overload_cap >= default_cap else [default_cap, p.overload_cap]
    for cap in caps:
        label = f"{p.overload_connections} connections, max_inflight_requests {cap}"
        server = {} if cap == default_cap else {"max_inflight_requests": cap}
        with bench.gateway(workers=1, server=server) as gw:
            m, probe = _flood(bench, gw, label)
        result.measurements.append(m)
        rejected = m.statuses.get("503", 0)
        total = sum(m.statuses.values())
        share = rejected / total if total else 0.0
        table = m.extra.get("percentiles", [])
        bound = round(at(table, 100 * (share + 0.99 * (1 - share))), 3) if table else None
        answered = total / m.duration_s if m.duration_s else 0.0
        entry: dict[str, object] = {
            "littles_law_mean_ms": round(1000 * p.overload_connections / answered, 1)
            if answered
            else None,
            "accepted_per_s": m.rps,
            "rejected_503_per_s": round(rejected / m.duration_s, 1) if m.duration_s else None,
            "share_503": round(share, 4),
            "overall_p99_ms": m.latency.p99 if m.latency else None,
            "accepted_p99_upper_bound_ms": bound,
        }
        if probe is not None:
            for status in ("200", "503"):
                lat = probe.latency(status)
                entry[f"probe_{status}_p99_ms"] = lat.p99 if lat else None
                entry[f"probe_{status}_count"] = probe.statuses.get(status, 0)
        result.summary[f"cap {cap}"] = entry
        variant = f"{p.overload_connections} connections, cap {cap}"
        result.judge("overload/p99", bound, variant, note=f"{100 * share:.1f} % answered 503")
        fast = entry.get("probe_503_p99_ms")
        if rejected and isinstance(fast, float):
            result.judge("overload/503", fast, variant, note="our reading of 'fast'")
