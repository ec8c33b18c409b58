"""5. stream: one big download and one big upload through each target (1 GiB each in the quick
and full profiles): MB/s, and how much the server's RSS grew while streaming. curl is the
client and the bytes backend (`baselines/static_backend.py`) serves the download from one
pre-built block and counts the upload, so neither end sets the pace on the generator core.

Each target first streams WARM bytes each way, unmeasured, as idle.py opens connections
before it counts: the first stream of a fresh process pays one-off costs (the allocator's heap
growing to its working set, first TLS buffers), which are not per stream; nginx's first
stream grew 4.3 MiB and every later one 0.9 MiB."""

from __future__ import annotations

from benchmarks.loadgen import run_stream
from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import BYTES, Bench, Server
from benchmarks.scenarios.common import baselines

NAME = "stream"
DESCRIPTION = "1 GiB down and 1 GiB up: MB/s vs direct, nginx and the naive proxy; peak RSS"
PATHS = {"download": "/api/bytes", "upload": "/api/sink"}
WARM = 64 << 20


def _warm(bench: Bench, target: Server) -> None:
    """Stream WARM bytes each way (fewer if the profile's streams are smaller), unmeasured."""
    size = min(WARM, bench.profile.stream_bytes)
    for direction, path in PATHS.items():
        url = target.url(path if direction == "upload" else f"{path}/{size}")
        cpus = bench.layout.generator
        run_stream(url, direction, size, bench.procs, bench.workdir, cpus, target.token)


def run(bench: Bench, result: ScenarioResult) -> None:
    with bench.gateway(workers=1, backend=BYTES) as gw:
        targets = baselines(bench, result, gw, BYTES)
        for target in targets:
            _warm(bench, target)
        result.notes.append(
            f"each target streamed {min(WARM, bench.profile.stream_bytes) >> 20} MiB each way "
            "first, unmeasured: one-off allocations are not per stream"
        )
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
        result.judge(
            "stream/nginx",
            vs_nginx,
            direction,
            note="" if vs_nginx is not None else "nginx not measured",
        )
        grew = result.summary[direction]["edgeauth_rss_growth_mib"]
        result.judge("stream/rss", grew, f"{direction}, per stream")
