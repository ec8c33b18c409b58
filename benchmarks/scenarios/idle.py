"""7. idle: many idle keep-alive TLS connections (10,000 in the quick and full profiles), each
after one request: the server's RSS growth per connection, edgeauth vs nginx vs the naive
proxy. The client is the built-in generator's `idle` mode (plain asyncio, own process)."""

from __future__ import annotations

import resource
import time

from benchmarks.loadgen import idle_connections
from benchmarks.procs import rss_kib
from benchmarks.results import Measurement, ScenarioResult, Skip
from benchmarks.runner import PROTECTED_PATH, Bench, Server

NAME = "idle"
DESCRIPTION = "10,000 idle keep-alive TLS connections: server RSS per connection"
GOAL_KIB = 32.0
WARM = 100  # connections opened and closed first: one-off allocations are not per connection


def _rss(target: Server) -> int:
    return sum(rss_kib(pid) for pid in target.pids())


def _hold(bench: Bench, target: Server, count: int) -> Measurement:
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    url = target.url(PROTECTED_PATH)
    cpus = bench.layout.generator
    settle = 1.0 if count >= 10 * WARM else 0.1
    if count >= 10 * WARM:
        with idle_connections(url, WARM, bench.procs, bench.workdir, cpus, headers):
            pass
        time.sleep(settle)
    before = _rss(target)
    with idle_connections(url, count, bench.procs, bench.workdir, cpus, headers) as held:
        time.sleep(settle)
        during = _rss(target)
    time.sleep(settle)
    after = _rss(target)
    opened = int(held["held"])
    per = (during - before) / opened if opened else None
    m = Measurement(
        target=target.name,
        label=f"{count} idle TLS connections",
        tool="builtin-idle",
        duration_s=round(float(held["connect_seconds"]), 3),
        requests=opened,
        errors=int(held["failed"]),
        statuses={},
        rps=round(opened / float(held["connect_seconds"]), 1) if held["connect_seconds"] else 0,
        latency=None,
        rss_start_mib=round(before / 1024, 1),
        rss_peak_mib=round(during / 1024, 1),
        layout=bench.layout.describe(),
        command=f"python -m benchmarks.aioload  # idle: {count} connections to {url}",
        extra={
            "held": opened,
            "kib_per_connection": None if per is None else round(per, 2),
            "rss_after_close_mib": round(after / 1024, 1),
        },
    )
    shown = "?" if per is None else f"{per:.1f}"
    bench.say(f"  {target.name:<9} {opened} connections held: {shown} KiB each")
    return m


def run(bench: Bench, result: ScenarioResult) -> None:
    count = bench.profile.idle_connections
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if count > files - 500:
        count = max(10, files - 500)
        result.notes.append(f"{count} connections only: the open-file limit is {files}")
    result.notes.append("rps column: connections opened per second (TLS handshake + 1 request)")
    with bench.gateway(workers=1) as gw:
        targets: list[Server] = []
        try:
            targets.append(bench.nginx())
        except Skip as exc:
            result.notes.append(f"nginx baseline not measured: {exc}")
        targets += [bench.naive(), gw]
        for target in targets:
            result.measurements.append(_hold(bench, target, count))
    per = {m.target: m.extra["kib_per_connection"] for m in result.measurements}
    result.summary["kib_per_connection"] = per
    mine = per.get("edgeauth")
    result.check(
        "idle RSS per connection",
        mine,
        f"≤ {GOAL_KIB:g} KiB",
        None if mine is None else mine <= GOAL_KIB,
    )
