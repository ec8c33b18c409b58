"""10. stream-tcp: a TLS-terminating TCP stream ([[streams]], issue 18) in front of a raw TCP
upstream: MB/s of one connection sending `tcp_stream_bytes` up and one receiving as many down,
and new TLS connections per second (several clients, each: connect, full handshake, one
16-byte echo, close); edgeauth against nginx's stream module and the floor relay
(`baselines/floor_stream.py`) in the same run, plus the upstream measured directly (plain
TCP) to show it is not what sets the pace.

Volume: 1 GiB each way per round (the issue's figure) with --full or when the scenario is named
(`--scenario stream-tcp`); 256 MiB in a whole quick run, to keep `make bench` short.

One stream takes a second or two: on a shared machine one of them can land on a busy moment
(single runs of the same build gave edgeauth/nginx from 0.6 to 1.8). So, as `public` does:
ROUNDS rounds, each measuring every target, in the reverse order of the round before; a ratio
per round between figures measured seconds apart; the median of the rounds' ratios is judged,
and every round's ratio is kept in the summary (the spread).

The upstream (`baselines/tcp_upstream.py`) shares the generator's core with the client, as
every backend does. With one core each, the generator is rarely idle: the client's TLS costs
what the relay's does, and the upstream's socket work what the relay's plain leg does, so a
relay as lean as nginx keeps the generator core near its limit (the runs say so). MB/s is
then partly the generator's; MB per second of the server's own CPU (its tree's user + system
time over the run) is not, and is reported beside it, with its ratios.

RSS growth per connection is the growth of the gateway's process tree (supervisor and its one
worker: only the worker relays, the supervisor's share is constant) from the start of one
stream to its peak, the largest of the rounds. Each target first streams WARM bytes each way
and opens connections for the profile's warm-up, unmeasured, as `stream` and `idle` do: the
first streams of a fresh process pay one-off costs (the allocator's heap growing to its
working set, the first TLS buffers) that are not per connection."""

from __future__ import annotations

import statistics
from collections.abc import Callable
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
ROUNDS = 5  # quick and full: odd, so the median is one round's
WARM = 64 << 20
CLIENTS = 8  # concurrent clients of the new-connections runs
CONNECT = "new TLS connections"
OTHERS = ("nginx", "floor")  # what edgeauth's figures are divided by


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
    relay, then edgeauth: the order of the first round."""
    found = [bench.backend(TCP)]
    try:
        found.append(bench.nginx_stream())
    except Skip as exc:
        result.notes.append(f"nginx baseline not measured: {exc}")
        result.summary["nginx"] = f"not measured: {exc}"
    found.append(bench.floor_stream())
    found.append(edgeauth)
    return found


def _rounds(bench: Bench) -> int:
    p = bench.profile
    return p.rounds if p.name == "smoke" else max(ROUNDS, p.rounds)


def _connect_seconds(bench: Bench) -> float:
    """One round's new-connections run: half the profile's load, at least 2 s (smoke: as is)."""
    p = bench.profile
    return p.duration if p.name == "smoke" else max(2.0, p.duration / 2)


def _warm(bench: Bench, targets: list[Server], clients: int) -> None:
    size = min(WARM, bench.profile.tcp_stream_bytes)
    for target in targets:
        for direction in DIRECTIONS:
            bench.tcp_stream(target, direction, size)
        if target.name != "direct" and bench.profile.warmup > 0:
            bench.tcp_connections(target, "warm-up", clients, bench.profile.warmup)


def run(bench: Bench, result: ScenarioResult) -> None:
    size = bench.profile.tcp_stream_bytes
    clients = min(CLIENTS, bench.profile.connections)
    seconds = _connect_seconds(bench)
    upstream = bench.backend(TCP)
    port = free_port()
    with bench.gateway(workers=1, streams=[_stream_table(upstream, port)]) as gw:
        edgeauth = Server("edgeauth", f"tls://127.0.0.1:{port}", gw.procs)
        targets = _targets(bench, result, edgeauth)
        _warm(bench, targets, clients)
        for i in range(_rounds(bench)):
            order = targets if i % 2 == 0 else targets[::-1]
            for target in order:
                for direction in DIRECTIONS:
                    m = bench.tcp_stream(target, direction, size)
                    m.extra["round"] = i
                    result.measurements.append(m)
            for target in order:
                if target.name != "direct":  # plain TCP: no handshake to count
                    m = bench.tcp_connections(target, CONNECT, clients, seconds)
                    m.extra["round"] = i
                    result.measurements.append(m)
    result.notes.append(
        f"each target first streamed {min(WARM, size) >> 20} MiB each way and opened "
        "connections for the warm-up, unmeasured: one-off allocations are not per connection"
    )
    result.notes.append(
        f"rps column of '{CONNECT}': connections per second ({clients} clients, each: connect, "
        f"full TLS handshake, 16-byte echo, close; {seconds:g} s per round)"
    )
    _summarise(result, [t.name for t in targets])


def _mbps(m: Measurement) -> float | None:
    return m.mb_per_s


def _rps(m: Measurement) -> float | None:
    return m.rps


def _mb_per_cpu_second(m: Measurement) -> float | None:
    """MB moved per second of the server's CPU: the MB/s its core alone would allow."""
    if m.mb_per_s is None or not m.cpu_seconds:
        return None
    return round(m.mb_per_s * m.duration_s / m.cpu_seconds, 1)


def _per_cpu_second(found: list[Measurement]) -> list[float]:
    return [v for m in found if (v := _mb_per_cpu_second(m)) is not None]


def _round_ratios(
    result: ScenarioResult, label: str, value: Callable[[Measurement], float | None], other: str
) -> list[float]:
    """edgeauth's figure over `other`'s, per round (both measured in that round)."""
    theirs = {m.extra["round"]: value(m) for m in result.by_target(other, label)}
    found = [
        r
        for m in result.by_target("edgeauth", label)
        if (r := ratio(value(m), theirs.get(m.extra["round"]))) is not None
    ]
    return sorted(found)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _growth(m: Measurement) -> float | None:
    if m.rss_peak_mib is None or m.rss_start_mib is None:
        return None
    return round(m.rss_peak_mib - m.rss_start_mib, 1)


def _summarise(result: ScenarioResult, names: list[str]) -> None:
    labels = {
        d: next(m.label for m in result.measurements if m.label.startswith(d)) for d in DIRECTIONS
    }
    rounds = 1 + max(m.extra["round"] for m in result.measurements)
    result.summary["volume"] = (
        labels["up"].partition(" ")[2]
        + f" each way per round, one connection each, {rounds} round(s)"
    )
    result.summary["mb_per_s"] = {
        d: {n: result.median_mbps(n, labels[d]) for n in names} for d in DIRECTIONS
    }
    result.summary["connections_per_s"] = {
        n: result.median_rps(n, CONNECT) for n in names if n != "direct"
    }
    result.summary["rss_growth_mib_per_connection"] = {
        d: {
            n: max(
                (g for m in result.by_target(n, labels[d]) if (g := _growth(m)) is not None),
                default=None,
            )
            for n in names
        }
        for d in DIRECTIONS
    }
    result.summary["mb_per_cpu_second"] = {
        d: {n: _median(_per_cpu_second(result.by_target(n, labels[d]))) for n in names}
        for d in DIRECTIONS
    }
    spread: dict[str, list[float]] = {}
    for other in OTHERS:
        for d in DIRECTIONS:
            spread[f"edgeauth/{other} MB/s {d}"] = _round_ratios(result, labels[d], _mbps, other)
            spread[f"edgeauth/{other} MB per CPU-second {d}"] = _round_ratios(
                result, labels[d], _mb_per_cpu_second, other
            )
        spread[f"edgeauth/{other} connections/s"] = _round_ratios(result, CONNECT, _rps, other)
    for key, values in spread.items():
        result.summary[key] = _median(values)  # the median of the rounds' own ratios
    for key, values in spread.items():
        result.summary[f"{key}, each round"] = values
    for d in DIRECTIONS:
        vs_nginx = result.summary[f"edgeauth/nginx MB/s {d}"]
        runs = result.by_target("nginx", labels[d]) + result.by_target("edgeauth", labels[d])
        hot = sum(m.generator_saturated for m in runs)
        note = f"median of {rounds} rounds" if vs_nginx is not None else "nginx not measured"
        if hot:
            note += f"; generator core past its limit in {hot} of {len(runs)} runs"
        result.judge("stream-tcp/nginx", vs_nginx, labels[d], note=note)
    for d in DIRECTIONS:
        growth = result.summary["rss_growth_mib_per_connection"][d]["edgeauth"]
        result.judge("stream-tcp/rss", growth, f"{labels[d]}, largest of {rounds} rounds")
