"""5. stream: one big download and one big upload through each target (1 GiB each in the quick
and full profiles): MB/s, and how much the server's RSS grew while streaming."""

from __future__ import annotations

from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import Bench
from benchmarks.scenarios.common import baselines

NAME = "stream"
DESCRIPTION = "1 GiB down and 1 GiB up: MB/s vs direct, nginx and the naive proxy; peak RSS"
PATHS = {"download": "/api/bytes", "upload": "/api/sink"}
RSS_GOAL_MIB = 5.0


def run(bench: Bench, result: ScenarioResult) -> None:
    with bench.gateway(workers=1) as gw:
        targets = baselines(bench, result, gw)
        for _ in range(bench.profile.rounds):
            for target in targets:
                for direction, path in PATHS.items():
                    m = bench.stream(target, direction, path, target.token)
                    result.measurements.append(m)
    for direction in PATHS:
        label = next(m.label for m in result.measurements if m.label.startswith(direction))
        speeds = {t.name: result.median_mbps(t.name, label) for t in targets}
        growth = [
            m.rss_peak_mib - m.rss_start_mib
            for m in result.by_target("edgeauth", label)
            if m.rss_peak_mib is not None and m.rss_start_mib is not None
        ]
        result.summary[direction] = {
            "mb_per_s": speeds,
            "edgeauth/direct": ratio(speeds["edgeauth"], speeds.get("direct")),
            "edgeauth/nginx": ratio(speeds["edgeauth"], speeds.get("nginx")),
            "edgeauth/naive": ratio(speeds["edgeauth"], speeds.get("naive")),
            "edgeauth_rss_growth_mib": round(max(growth), 1) if growth else None,
        }
        vs_nginx = result.summary[direction]["edgeauth/nginx"]
        result.check(
            f"stream {direction} ≥ 0.9x nginx MB/s",
            vs_nginx,
            "≥ 0.9",
            None if vs_nginx is None else vs_nginx >= 0.9,
            note="" if vs_nginx is not None else "nginx not measured",
        )
        grew = result.summary[direction]["edgeauth_rss_growth_mib"]
        result.check(
            f"stream {direction}: RSS growth per stream",
            grew,
            f"≤ {RSS_GOAL_MIB:g} MiB",
            None if grew is None else grew <= RSS_GOAL_MIB,
        )
