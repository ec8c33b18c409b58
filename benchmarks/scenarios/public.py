"""2. public: the same GETs through a public route (no token), against the protected route on
the same gateway, in alternating rounds: what validation costs.

A cost of a few % is far inside the noise of one load on a shared machine (rounds of one run
swung 6.6k to 9.3k req/s), so both cost scenarios (this one and accesslog) measure it the same
robust way, with `paired_cost`:
- many short rounds, each measuring both arms back to back, in A B, B A, A B... order, so a
  drift of the machine's load falls on both arms alike;
- a cost per round (the pair's ratio), then the median of the rounds: one disturbed round
  cannot move it, and it never compares arms measured minutes apart;
- rounds whose server core other processes also used (past OTHERS_LIMIT) are left out while
  at least MIN_QUIET rounds remain;
- two figures: the req/s cost, and the same cost computed from the server's CPU µs per
  request (at saturation req/s is the inverse of CPU per request): extra CPU per request is far
  less sensitive to other load than req/s, so the target is judged on it; both are reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.results import OTHERS_LIMIT, Measurement, ScenarioResult
from benchmarks.runner import PROTECTED_PATH, PUBLIC_PATH, Bench, Server
from benchmarks.scenarios.common import get_spec

NAME = "public"
DESCRIPTION = "GETs through a public route (no auth) vs the protected route: the validation cost"
PUBLIC = "public GET /public/events"
PROTECTED = "protected GET /api/events"
ROUNDS = 9  # quick and full: odd, so the median is one round's
MIN_QUIET = 5  # rounds that must remain for the shared ones to be left out
ROUND_WARMUP = 0.5  # seconds of load before each measured round, on fresh connections


def round_seconds(bench: Bench) -> float:
    """One round's measured load: half the profile's, at least two seconds (smoke: as is)."""
    p = bench.profile
    return p.duration if p.name == "smoke" else max(2.0, p.duration / 2)


def rounds_of(bench: Bench) -> int:
    return (
        bench.profile.rounds if bench.profile.name == "smoke" else max(ROUNDS, bench.profile.rounds)
    )


def alternate(
    bench: Bench,
    result: ScenarioResult,
    base: Callable[[], Measurement],
    other: Callable[[], Measurement],
) -> list[tuple[Measurement, Measurement]]:
    """`rounds_of(bench)` pairs (base, other), measured A B, B A, A B...; each measurement
    is also recorded in `result`."""
    pairs = []
    for i in range(rounds_of(bench)):
        if i % 2 == 0:
            a = base()
            b = other()
        else:
            b = other()
            a = base()
        result.measurements += [a, b]
        pairs.append((a, b))
    return pairs


def _quiet(pair: tuple[Measurement, Measurement]) -> bool:
    return all((m.others_on_server_percent or 0.0) <= OTHERS_LIMIT for m in pair)


def paired_cost(
    result: ScenarioResult, pairs: list[tuple[Measurement, Measurement]], prefix: str
) -> tuple[float | None, float | None]:
    """(cost from CPU per request, cost from req/s), in % of the base arm, medians of the
    rounds' own costs; the summary gets both, each arm's medians and the rounds used."""
    quiet = [p for p in pairs if _quiet(p)]
    used = quiet if len(quiet) >= MIN_QUIET else pairs
    by_rps = [100 * (1 - b.rps / a.rps) for a, b in used if a.rps > 0]
    by_cpu = [
        100 * (1 - a.cpu_us_per_request / b.cpu_us_per_request)
        for a, b in used
        if a.cpu_us_per_request and b.cpu_us_per_request
    ]
    extra = [
        b.cpu_us_per_request - a.cpu_us_per_request
        for a, b in used
        if a.cpu_us_per_request is not None and b.cpu_us_per_request is not None
    ]
    cpu_cost = round(statistics.median(by_cpu), 2) if by_cpu else None
    rps_cost = round(statistics.median(by_rps), 2) if by_rps else None
    result.summary |= {
        f"{prefix}_cost_percent": rps_cost,
        f"{prefix}_cost_percent_by_cpu": cpu_cost,
        f"{prefix}_cpu_us": round(statistics.median(extra), 1) if extra else None,
        f"{prefix}_cost_percent_rounds_by_cpu": [round(c, 1) for c in by_cpu],
        f"{prefix}_cost_percent_rounds": [round(c, 1) for c in by_rps],
        f"{prefix}_rounds_used": f"{len(used)} of {len(pairs)}"
        + ("" if used is quiet else f" (fewer than {MIN_QUIET} with a quiet server core)"),
    }
    hot = sum(1 for a, b in used if a.generator_saturated or b.generator_saturated)
    if hot:
        result.notes.append(
            f"the generator core was past its limit in {hot} of {len(used)} rounds used: it set"
            " the pace, the server was not saturated, and its CPU per request then moves with"
            " the generator's pace too; instructions per request (callgrind) are the steady figure"
        )
    if used is not quiet:
        result.notes.append(
            f"only {len(quiet)} of {len(pairs)} rounds had the server core to themselves"
            f" (others ≤ {OTHERS_LIMIT:g} %): all rounds used"
        )
    return cpu_cost, rps_cost


def median_of(pairs: list[tuple[Measurement, Measurement]], arm: int, cpu: bool) -> float | None:
    values = [
        v
        for pair in pairs
        if (v := (pair[arm].cpu_us_per_request if cpu else pair[arm].rps)) is not None
    ]
    return round(statistics.median(values), 1) if values else None


def summarize(
    result: ScenarioResult,
    pairs: list[tuple[Measurement, Measurement]],
    cost: str,
    arms: tuple[str, str],
) -> None:
    """Judge the target `cost` on the pairs (by CPU per request, req/s beside it) and record
    each arm's median req/s and CPU per request under its name."""
    cpu_cost, rps_cost = paired_cost(result, pairs, cost)
    for arm, name in enumerate(arms):
        result.summary[f"{name}_req_per_s"] = median_of(pairs, arm, cpu=False)
    for arm, name in enumerate(arms):
        result.summary[f"cpu_us_per_request_{name}"] = median_of(pairs, arm, cpu=True)
    result.judge(cost.replace("_", "-"), cpu_cost, note=f"by req/s: {rps_cost} %")


def measurer(
    bench: Bench, server: Server, label: str, path: str, name: str, public: bool = False
) -> Callable[[], Measurement]:
    def measure() -> Measurement:
        spec = get_spec(
            bench, server, path, duration=round_seconds(bench), warmup=ROUND_WARMUP, tokens=[]
        )
        if not public and server.token:
            spec.tokens = [server.token]
        if bench.profile.name == "smoke":
            spec.warmup = bench.profile.warmup
        return bench.measure(server, label, spec, name=name)

    return measure


def run(bench: Bench, result: ScenarioResult) -> None:
    rounds = rounds_of(bench)
    result.notes.append(
        f"{rounds} alternating rounds of {round_seconds(bench):g} s (public, protected; then"
        " protected, public; ...): costs are medians of the rounds' own ratios, judged on CPU"
        " per request (see benchmarks/scenarios/public.py)"
    )
    with bench.gateway(workers=1) as gw:
        pairs = alternate(
            bench,
            result,
            measurer(bench, gw, PUBLIC, PUBLIC_PATH, "edgeauth-public", public=True),
            measurer(bench, gw, PROTECTED, PROTECTED_PATH, "edgeauth"),
        )
    summarize(result, pairs, "validation", ("public", "protected"))
