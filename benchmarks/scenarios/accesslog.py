"""2b. accesslog: what the access log costs, validated GETs through a gateway logging each
request to a file (as users run it) and through one with the log off, in alternating rounds."""

from __future__ import annotations

from benchmarks.results import ScenarioResult
from benchmarks.runner import Bench
from benchmarks.scenarios.common import get_spec, median_of

NAME = "accesslog"
DESCRIPTION = "validated GETs with the access log to a file vs off: what the log costs"
LABEL = "GET /api/events"
ON = "edgeauth"
OFF = "edgeauth-log-off"


def run(bench: Bench, result: ScenarioResult) -> None:
    # 5 % is within one run's noise here: medians of 3 alternating rounds at least, as public.
    rounds = bench.profile.rounds if bench.profile.name == "smoke" else max(3, bench.profile.rounds)
    result.notes.append(f"medians of {rounds} alternating rounds (log on, log off)")
    with bench.gateway(workers=1) as on, bench.gateway(workers=1, access_log="off") as off:
        for _ in range(rounds):
            result.measurements.append(bench.measure(on, LABEL, get_spec(bench, on), name=ON))
            result.measurements.append(bench.measure(off, LABEL, get_spec(bench, off), name=OFF))
    logged = result.median_rps(ON, LABEL)
    unlogged = result.median_rps(OFF, LABEL)
    cost = None if not unlogged or logged is None else round(100 * (1 - logged / unlogged), 2)
    cpu_on = median_of(result, ON, LABEL, lambda m: m.cpu_us_per_request)
    cpu_off = median_of(result, OFF, LABEL, lambda m: m.cpu_us_per_request)
    result.summary |= {
        "log_on_req_per_s": logged,
        "log_off_req_per_s": unlogged,
        "access_log_cost_percent": cost,
        "cpu_us_per_request_log_on": cpu_on,
        "cpu_us_per_request_log_off": cpu_off,
        "access_log_cpu_us": None
        if cpu_on is None or cpu_off is None
        else round(cpu_on - cpu_off, 1),
    }
    result.judge("access-log", cost)
