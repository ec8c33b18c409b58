"""6. revoke: ms from the admin DELETE's 204 to the first 401 on every worker
(benchmarks.revocation, against a 2-worker `edgeauth serve` with its access log on)."""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks import revocation
from benchmarks.results import Latency, Measurement, ScenarioResult
from benchmarks.runner import UNPINNED, Bench

NAME = "revoke"
DESCRIPTION = "ms from admin DELETE 204 to the first 401 on every worker: p50/p99/max"
GOAL_MS = 50.0


def measure_revocation(bench: Bench, trials: int, workers: int) -> dict[str, Any]:
    with bench.gateway(workers=workers, pinned=False, access_log="access.log") as gw:
        return asyncio.run(
            revocation.measure(
                gw.port,
                gw.admin_port,
                gw.admin_token,
                bench.certs.ca_file,
                gw.directory / "access.log",
                trials,
                workers,
            )
        )


def run(bench: Bench, result: ScenarioResult) -> None:
    result.layout = UNPINNED.describe()
    trials = bench.profile.revoke_trials
    found = measure_revocation(bench, trials, 2)
    delays: list[float] = found.pop("delays_ms")
    result.measurements.append(
        Measurement(
            target="edgeauth",
            label=f"{trials} revocations, 2 workers",
            tool="benchmarks.revocation",
            duration_s=0.0,
            requests=len(delays),
            errors=int(found["200s_after_204"]),
            statuses={},
            rps=0.0,
            latency=Latency.of(delays),
            layout=UNPINNED.describe(),
            command="benchmarks.revocation.measure (probes on fresh TLS connections)",
            extra={"delays_ms": delays},
        )
    )
    result.summary |= found
    result.notes.append(
        "errors column: requests served 200 with the revoked token after the 204 "
        "(arrival time from the access log)."
    )
    p99 = float(found["p99_ms"])
    result.check("revoke p99", p99, f"≤ {GOAL_MS:g} ms", p99 <= GOAL_MS)
