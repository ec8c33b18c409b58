"""1. proxy: validated GETs with a cached token, small JSON from the backend."""

from __future__ import annotations

from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import Bench
from benchmarks.scenarios.common import baselines, get_spec, median_of, p99

NAME = "proxy"
DESCRIPTION = (
    "validated GETs with a cached token, small JSON: edgeauth vs the backend directly vs "
    "nginx (TLS reverse proxy) vs the naive aiohttp proxy"
)
LABEL = "GET /api/events"


def run(bench: Bench, result: ScenarioResult) -> None:
    profile = bench.profile
    rate = profile.open_loop_rate
    open_label = f"open loop {rate:g} req/s"
    with bench.gateway(workers=1) as gw:
        targets = baselines(bench, result, gw)
        for _ in range(profile.rounds):
            for target in targets:
                result.measurements.append(bench.measure(target, LABEL, get_spec(bench, target)))
        if rate > 0:
            for target in targets:
                spec = get_spec(bench, target, rate=rate, connections=32, warmup=0.0)
                m = bench.measure(target, open_label, spec, tool="builtin")
                result.measurements.append(m)
    rps = {t.name: result.median_rps(t.name, LABEL) for t in targets}
    result.summary["req_per_s"] = rps
    result.summary["edgeauth/direct"] = ratio(rps["edgeauth"], rps.get("direct"))
    result.summary["edgeauth/nginx"] = ratio(rps["edgeauth"], rps.get("nginx"))
    result.summary["edgeauth/naive"] = ratio(rps["edgeauth"], rps.get("naive"))
    closed = median_of(result, "edgeauth", LABEL, p99)
    result.summary["edgeauth_p99_ms"] = closed
    result.check(
        "proxy ≥ 1.7x naive proxy (req/s)",
        result.summary["edgeauth/naive"],
        "≥ 1.7",
        None
        if result.summary["edgeauth/naive"] is None
        else result.summary["edgeauth/naive"] >= 1.7,
    )
    result.check(
        f"proxy p99 ≤ 5 ms (closed loop, {profile.connections} connections, saturated)",
        closed,
        "≤ 5 ms",
        None if closed is None else closed <= 5.0,
    )
    if rate > 0:
        opened = median_of(result, "edgeauth", open_label, p99)
        result.summary["edgeauth_open_loop_p99_ms"] = opened
        result.summary["open_loop_p99_ms"] = {
            t.name: median_of(result, t.name, open_label, p99) for t in targets
        }
        result.check(
            f"proxy p99 ≤ 5 ms (open loop at {rate:g} req/s, built-in generator)",
            opened,
            "≤ 5 ms",
            None if opened is None else opened <= 5.0,
        )
