"""2. public: the same GETs through a public route (no token), against the protected route on
the same gateway, alternating: what validation costs."""

from __future__ import annotations

from benchmarks.results import ScenarioResult
from benchmarks.runner import PROTECTED_PATH, PUBLIC_PATH, Bench
from benchmarks.scenarios.common import get_spec, median_of

NAME = "public"
DESCRIPTION = "GETs through a public route (no auth) vs the protected route: the validation cost"
PUBLIC = "public GET /public/events"
PROTECTED = "protected GET /api/events"


def run(bench: Bench, result: ScenarioResult) -> None:
    # A 3 % difference is within one run's noise here: medians of 3 alternating rounds at least.
    rounds = bench.profile.rounds if bench.profile.name == "smoke" else max(3, bench.profile.rounds)
    result.notes.append(f"medians of {rounds} alternating rounds (public, protected)")
    with bench.gateway(workers=1) as gw:
        for _ in range(rounds):
            spec = get_spec(bench, gw, PUBLIC_PATH, tokens=[])
            result.measurements.append(bench.measure(gw, PUBLIC, spec, name="edgeauth-public"))
            spec = get_spec(bench, gw, PROTECTED_PATH)
            result.measurements.append(bench.measure(gw, PROTECTED, spec))
    public = result.median_rps("edgeauth-public", PUBLIC)
    protected = result.median_rps("edgeauth", PROTECTED)
    cost = None if not public or protected is None else round(100 * (1 - protected / public), 2)
    cpu_public = median_of(result, "edgeauth-public", PUBLIC, lambda m: m.cpu_us_per_request)
    cpu_protected = median_of(result, "edgeauth", PROTECTED, lambda m: m.cpu_us_per_request)
    result.summary |= {
        "public_req_per_s": public,
        "protected_req_per_s": protected,
        "validation_cost_percent": cost,
        "cpu_us_per_request_public": cpu_public,
        "cpu_us_per_request_protected": cpu_protected,
        "validation_cpu_us": (
            None
            if cpu_public is None or cpu_protected is None
            else round(cpu_protected - cpu_public, 1)
        ),
    }
    result.judge("validation", cost)
