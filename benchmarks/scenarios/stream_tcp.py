"""10. stream-tcp: a TLS-terminating TCP stream ([[streams]], issue 18) in front of a raw TCP
upstream: MB/s of one connection sending `stream_bytes` up (1 GiB in the quick and full
profiles) and one receiving as many down, and new TLS connections per second (several
clients, each: connect, full handshake, one 16-byte echo, close); edgeauth against nginx's
stream module and the floor relay (`baselines/floor_stream.py`) in the same run, plus the
upstream measured directly (plain TCP) to show it is not what sets the pace. Rounds after
the first (--full) measure the targets in the reverse order of the one before.

The upstream (`baselines/tcp_upstream.py`) shares the generator's core with the client, as
every backend does; it costs a few percent of what the TLS legs cost, and the direct run
shows its ceiling. RSS growth per connection is the growth of the gateway's process tree
(supervisor and its one worker: only the worker relays, the supervisor's share is constant)
from the start of one stream to its peak. Each target first streams WARM bytes each way,
unmeasured, as `stream` does: the first stream of a fresh process pays one-off costs (the
allocator's heap growing to its working set, the first TLS buffers) that are not per
connection."""

from __future__ import annotations

from typing import Any

from benchmarks.procs import free_port
from benchmarks.results import Measurement, ScenarioResult, Skip, ratio
from benchmarks.runner import TCP, Bench, Server

NAME = "stream-tcp"
DESCRIPTION = (
    "TLS-terminating TCP stream: MB/s up and down on one connection and new TLS connections/s, "
    "edgeauth vs nginx's stream module vs the floor relay"
)
DIRECTIONS = ("up", "down")
WARM = 64 << 20
CLIENTS = 8  # concurrent clients of the new-connections run
CONNECT = "new TLS connections"


def _stream_table(upstream: Server, port: int) -> dict[str, Any]:
    """The [[streams]] table under test: TLS terminated with the server's certificate."""
    return {
        "name": "bench-tcp",
        "listen": f"127.0.0.1:{port}",
        "upstream": upstream.base_url,
        "tls": True,
    }


def _targets(bench: Bench, result: ScenarioResult, edgeauth: Server) -> list[Server]:
    """direct (the upstream in plain TCP), nginx (when it has the stream module), the floor
    relay, then edgeauth: the order they are measured in."""
    found = [bench.backend(TCP)]
    try:
        found.append(bench.nginx_stream())
    except Skip as exc:
        result.notes.append(f"nginx baseline not measured: {exc}")
        result.summary["nginx"] = f"not measured: {exc}"
    found.append(bench.floor_stream())
    found.append(edgeauth)
    return found


def _growth(m: Measurement) -> float | None:
    if m.rss_peak_mib is None or m.rss_start_mib is None:
        return None
    return round(m.rss_peak_mib - m.rss_start_mib, 1)


def run(bench: Bench, result: ScenarioResult) -> None:
    size = bench.profile.stream_bytes
    clients = min(CLIENTS, bench.profile.connections)
    upstream = bench.backend(TCP)
    port = free_port()
    with bench.gateway(workers=1, streams=[_stream_table(upstream, port)]) as gw:
        edgeauth = Server("edgeauth", f"tls://127.0.0.1:{port}", gw.procs)
        targets = _targets(bench, result, edgeauth)
        warm = min(WARM, size)
        for target in targets:
            for direction in DIRECTIONS:
                bench.tcp_stream(target, direction, warm)
        result.notes.append(
            f"each target streamed {warm >> 20} MiB each way first, unmeasured: one-off "
            "allocations are not per connection"
        )
        for i in range(bench.profile.rounds):
            order = targets if i % 2 == 0 else targets[::-1]  # drift on a shared machine
            for target in order:
                for direction in DIRECTIONS:
                    result.measurements.append(bench.tcp_stream(target, direction, size))
            for target in order:
                if target.name != "direct":  # plain TCP: no handshake to count
                    result.measurements.append(bench.tcp_connections(target, CONNECT, clients))
    result.notes.append(
        f"rps column of '{CONNECT}': connections per second ({clients} clients, each: connect, "
        "full TLS handshake, 16-byte echo, close)"
    )
    _summarise(result, [t.name for t in targets])


def _summarise(result: ScenarioResult, names: list[str]) -> None:
    labels = {
        d: next(m.label for m in result.measurements if m.label.startswith(d)) for d in DIRECTIONS
    }
    result.summary["volume"] = labels["up"].partition(" ")[2] + " each way, one connection each"
    speeds = {d: {n: result.median_mbps(n, labels[d]) for n in names} for d in DIRECTIONS}
    result.summary["mb_per_s"] = speeds
    rates = {n: result.median_rps(n, CONNECT) for n in names if n != "direct"}
    result.summary["connections_per_s"] = rates
    growth = {
        d: {
            n: max(
                (g for m in result.by_target(n, labels[d]) if (g := _growth(m)) is not None),
                default=None,
            )
            for n in names
        }
        for d in DIRECTIONS
    }
    result.summary["rss_growth_mib_per_connection"] = growth
    for d in DIRECTIONS:
        for other in ("nginx", "floor"):
            result.summary[f"edgeauth/{other} MB/s {d}"] = ratio(
                speeds[d]["edgeauth"], speeds[d].get(other)
            )
    for other in ("nginx", "floor"):
        result.summary[f"edgeauth/{other} connections/s"] = ratio(
            rates["edgeauth"], rates.get(other)
        )
    for d in DIRECTIONS:
        vs_nginx = result.summary[f"edgeauth/nginx MB/s {d}"]
        hot = sorted(
            f"{m.target} at {m.generator_busy_percent:g} %"
            for m in result.measurements
            if m.label == labels[d] and m.target in ("edgeauth", "nginx") and m.generator_saturated
        )
        note = "nginx not measured" if vs_nginx is None else ""
        note = f"generator saturated: {', '.join(hot)}" if hot else note
        result.judge("stream-tcp/nginx", vs_nginx, labels[d], note=note)
    for d in DIRECTIONS:
        result.judge("stream-tcp/rss", growth[d]["edgeauth"], labels[d])
