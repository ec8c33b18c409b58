"""6. revoke: ms from the admin DELETE's 204 to the first 401 on every worker
(benchmarks.revocation, against a 2-worker `edgeauth serve` with its access log on)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

from benchmarks import revocation
from benchmarks.results import Latency, Measurement, ScenarioResult
from benchmarks.runner import UNPINNED, Bench

NAME = "revoke"
DESCRIPTION = "ms from admin DELETE 204 to the first 401 on every worker: p50/p99/max"
GOAL_MS = 50.0
NODES_GOAL_MS = 100.0


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


PG_DSN = os.environ.get("EDGEAUTH_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server for the two nodes; dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"edgeauth_bench_{secrets.token_hex(4)}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f"CREATE SCHEMA {name}"))
    try:
        sep = "&" if "?" in dsn else "?"
        yield f"{dsn}{sep}options=-csearch_path%3D{name}"
    finally:
        asyncio.run(sql(f"DROP SCHEMA IF EXISTS {name} CASCADE"))


def measure_nodes(bench: Bench, trials: int, dsn: str) -> dict[str, Any]:
    """Node A's admin DELETE → node B's first 401 (2 workers each, one PostgreSQL schema)."""
    store = {"backend": "postgres", "dsn": dsn, "pool_size": 4}
    with (
        bench.gateway(workers=2, pinned=False, store=store, name="node-a") as a,
        bench.gateway(
            workers=2, pinned=False, access_log="access.log", store=store, name="node-b"
        ) as b,
    ):
        return asyncio.run(
            revocation.measure(
                b.port,
                a.admin_port,
                a.admin_token,
                bench.certs.ca_file,
                b.directory / "access.log",
                trials,
                2,
            )
        )


def _record(result: ScenarioResult, found: dict[str, Any], label: str, command: str) -> None:
    """One revocation measurement as a result row (its delays moved out of `found`)."""
    delays: list[float] = found.pop("delays_ms")
    result.measurements.append(
        Measurement(
            target="edgeauth",
            label=label,
            tool="benchmarks.revocation",
            duration_s=0.0,
            requests=len(delays),
            errors=int(found["200s_after_204"]),
            statuses={},
            rps=0.0,
            latency=Latency.of(delays),
            layout=UNPINNED.describe(),
            command=command,
            extra={"delays_ms": delays},
        )
    )


def _nodes(bench: Bench, result: ScenarioResult, trials: int) -> None:
    try:
        with pg_schema(PG_DSN) as dsn:
            found = measure_nodes(bench, trials, dsn)
    except Exception as exc:  # no driver, no server, no rights: report it, go on
        result.notes.append(f"2-node PostgreSQL measurement skipped: {exc!r}")
        return
    _record(
        result,
        found,
        f"{trials} revocations, node A → node B (PostgreSQL)",
        "benchmarks.revocation.measure, admin on node A, probes on node B",
    )
    result.summary |= {f"nodes_{k}": v for k, v in found.items()}
    p99 = float(found["p99_ms"])
    result.check("revoke across nodes p99", p99, f"≤ {NODES_GOAL_MS:g} ms", p99 <= NODES_GOAL_MS)


def run(bench: Bench, result: ScenarioResult) -> None:
    result.layout = UNPINNED.describe()
    trials = bench.profile.revoke_trials
    found = measure_revocation(bench, trials, 2)
    _record(
        result,
        found,
        f"{trials} revocations, 2 workers",
        "benchmarks.revocation.measure (probes on fresh TLS connections)",
    )
    result.summary |= found
    result.notes.append(
        "errors column: requests served 200 with the revoked token after the 204 "
        "(arrival time from the access log)."
    )
    p99 = float(found["p99_ms"])
    result.check("revoke p99", p99, f"≤ {GOAL_MS:g} ms", p99 <= GOAL_MS)
    _nodes(bench, result, trials)
