"""2b. accesslog: what the access log costs, validated GETs through a gateway logging each
request to a file (as users run it) and through one with the log off, in alternating rounds
measured and judged as public.py's (medians of the rounds' own costs, judged on CPU per
request, the req/s cost reported beside it)."""

from __future__ import annotations

from benchmarks.results import ScenarioResult
from benchmarks.runner import PROTECTED_PATH, Bench
from benchmarks.scenarios.public import alternate, measurer, round_seconds, rounds_of, summarize

NAME = "accesslog"
DESCRIPTION = "validated GETs with the access log to a file vs off: what the log costs"
LABEL = "GET /api/events"
ON = "edgeauth"
OFF = "edgeauth-log-off"


def run(bench: Bench, result: ScenarioResult) -> None:
    result.notes.append(
        f"{rounds_of(bench)} alternating rounds of {round_seconds(bench):g} s (log off, log on;"
        " then on, off; ...): costs are medians of the rounds' own ratios, judged on CPU per"
        " request (see benchmarks/scenarios/public.py)"
    )
    with bench.gateway(workers=1) as on, bench.gateway(workers=1, access_log="off") as off:
        pairs = alternate(
            bench,
            result,
            measurer(bench, off, LABEL, PROTECTED_PATH, OFF),
            measurer(bench, on, LABEL, PROTECTED_PATH, ON),
        )
    summarize(result, pairs, "access_log", ("log_off", "log_on"))
