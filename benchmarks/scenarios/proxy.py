"""1. proxy: validated GETs with a cached token, small JSON from the static backend, through
edgeauth (one worker, access log on) and every baseline; edgeauth/floor is the headline.

When the optional mypyc build is there (`make mypyc`), a second gateway, `edgeauth-mypyc`,
runs from it with the same configuration and is measured in the same rounds, turn about
with the pure-Python one; otherwise the summary says how to make it."""

from __future__ import annotations

import contextlib
import statistics

from benchmarks import mypyc_build
from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import Bench, Gateway, Server
from benchmarks.scenarios.common import baselines, get_spec, median_of, p99, saturated

NAME = "proxy"
DESCRIPTION = (
    "validated GETs with a cached token, small JSON: edgeauth vs the backend directly vs "
    "nginx (TLS reverse proxy) vs the floor proxy vs the naive aiohttp proxy"
)
LABEL = "GET /api/events"
MYPYC = "edgeauth-mypyc"


def run(bench: Bench, result: ScenarioResult) -> None:
    profile = bench.profile
    rate = profile.open_loop_rate
    open_label = f"open loop {rate:g} req/s"
    with bench.gateway(workers=1) as gw, contextlib.ExitStack() as stack:
        targets = baselines(bench, result, gw, floor=True)
        compiled = compiled_gateway(bench, result, stack)
        if compiled is not None:
            targets.append(compiled)
        for i in range(profile.rounds):
            for target in _turn_about(targets, i):
                result.measurements.append(bench.measure(target, LABEL, get_spec(bench, target)))
        if rate > 0:
            for target in targets:
                spec = get_spec(bench, target, rate=rate, connections=32, warmup=0.0)
                m = bench.measure(target, open_label, spec, tool="builtin")
                result.measurements.append(m)
    rps = {t.name: result.median_rps(t.name, LABEL) for t in targets}
    result.summary["req_per_s"] = rps
    result.summary["cpu_us_per_request"] = {t.name: _cpu_us(result, t.name) for t in targets}
    for other in ("floor", "direct", "nginx", "naive"):
        result.summary[f"edgeauth/{other}"] = ratio(rps["edgeauth"], rps.get(other))
    if compiled is not None:
        _compare_compiled(result, rps)
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


def compiled_gateway(
    bench: Bench, result: ScenarioResult, stack: contextlib.ExitStack
) -> Gateway | None:
    """The gateway run from the mypyc build, or None with the reason in the summary: a build
    that is absent, imports Python where it should not, or does not start is left out."""
    build = bench.mypyc
    if build is None:
        result.summary["mypyc"] = f"not built: {mypyc_build.HINT}"
        return None
    python = mypyc_build.not_compiled(build)
    if python:
        result.summary["mypyc"] = f"not measured: imported as Python: {', '.join(python)}"
        return None
    try:
        gateway = stack.enter_context(bench.gateway(workers=1, name=MYPYC, tree=build.directory))
    except Exception as exc:
        result.summary["mypyc"] = f"not measured: {type(exc).__name__}: {exc}"[:300]
        return None
    result.summary["mypyc"] = build.describe()
    return gateway


def _turn_about(targets: list[Server], round_: int) -> list[Server]:
    """Every odd round measures the compiled and the pure gateway in the other order."""
    if round_ % 2 == 0 or targets[-1].name != MYPYC:
        return targets
    return [*targets[:-2], targets[-1], targets[-2]]


def _cpu_us(result: ScenarioResult, target: str) -> float | None:
    found = [m.cpu_us_per_request for m in result.by_target(target, LABEL) if m.cpu_us_per_request]
    return round(statistics.median(found), 1) if found else None


def _compare_compiled(result: ScenarioResult, rps: dict[str, float | None]) -> None:
    cpu = result.summary["cpu_us_per_request"]
    result.summary[f"{MYPYC}/edgeauth"] = ratio(rps[MYPYC], rps["edgeauth"])
    result.summary[f"{MYPYC}/edgeauth CPU per request"] = ratio(cpu[MYPYC], cpu["edgeauth"])
    for other in ("floor", "naive"):
        result.summary[f"{MYPYC}/{other}"] = ratio(rps[MYPYC], rps.get(other))
