"""8. workers: the proxy scenario at workers = 1 and 2, unpinned (all cores shared by the
generator, the backend and the gateway, as a real host would): the scaling factor."""

from __future__ import annotations

from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import UNPINNED, Bench
from benchmarks.scenarios.common import get_spec

NAME = "workers"
DESCRIPTION = "proxy at workers = 1 and 2 (unpinned): scaling factor"


def run(bench: Bench, result: ScenarioResult) -> None:
    result.layout = UNPINNED.describe()
    for _ in range(bench.profile.rounds):
        for workers in (1, 2):
            with bench.gateway(workers=workers, pinned=False) as gw:
                spec = get_spec(bench, gw)
                label = f"GET /api/events, {workers} worker(s)"
                m = bench.measure(gw, label, spec, layout=UNPINNED, name=f"edgeauth-{workers}w")
                result.measurements.append(m)
    one = result.median_rps("edgeauth-1w")
    two = result.median_rps("edgeauth-2w")
    result.summary |= {"workers_1_req_per_s": one, "workers_2_req_per_s": two}
    result.summary["scaling_factor"] = ratio(two, one)
    result.notes.append(
        "Unpinned on purpose: pinning both workers to the server core would measure nothing. "
        "The generator shares the cores, so the factor is below what dedicated cores give."
    )
