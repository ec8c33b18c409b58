"""1. proxy: validated GETs with a cached token, small JSON from the static backend, through
edgeauth (one worker, access log on) and every baseline; edgeauth/floor is the headline."""

from __future__ import annotations

from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import Bench
from benchmarks.scenarios.common import baselines, get_spec, median_of, p99, saturated

NAME = "proxy"
DESCRIPTION = (
    "validated GETs with a cached token, small JSON: edgeauth vs the backend directly vs "
    "nginx (TLS reverse proxy) vs the floor proxy vs the naive aiohttp proxy"
)
LABEL = "GET /api/events"


def run(bench: Bench, result: ScenarioResult) -> None:
    profile = bench.profile
    rate = profile.open_loop_rate
    open_label = f"open loop {rate:g} req/s"
    with bench.gateway(workers=1) as gw:
        targets = baselines(bench, result, gw, floor=True)
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
    for other in ("floor", "direct", "nginx", "naive"):
        result.summary[f"edgeauth/{other}"] = ratio(rps["edgeauth"], rps.get(other))
    closed = median_of(result, "edgeauth", LABEL, p99)
    errors = sum(m.errors for m in result.by_target("edgeauth"))
    result.summary["edgeauth_p99_ms"] = closed
    result.judge(
        "proxy/floor", result.summary["edgeauth/floor"], note=saturated(result, "edgeauth", "floor")
    )
    result.judge(
        "proxy/naive", result.summary["edgeauth/naive"], note=saturated(result, "edgeauth", "naive")
    )
    result.judge("proxy/p99", closed, f"closed loop, {profile.connections} connections, saturated")
    result.judge("proxy/errors", errors, "every edgeauth run of the scenario")
    if rate > 0:
        opened = median_of(result, "edgeauth", open_label, p99)
        result.summary["edgeauth_open_loop_p99_ms"] = opened
        result.summary["open_loop_p99_ms"] = {
            t.name: median_of(result, t.name, open_label, p99) for t in targets
        }
        result.judge("proxy/p99", opened, f"open loop at {rate:g} req/s, built-in generator")
