"""How long and how big each scenario runs: `quick` (default), `full` (--full), `smoke` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Profile:
    name: str
    duration: float  # seconds of one measured load
    warmup: float  # seconds of load thrown away before it (same connections count)
    rounds: int  # targets are measured round-robin this many times; medians are reported
    connections: int  # concurrent keep-alive connections of the closed-loop generator
    open_loop_rate: float  # requests/s of the open-loop latency runs (0 = skip them)
    stream_bytes: int  # bytes down and bytes up through each target
    revoke_trials: int
    idle_connections: int
    invalid_pool: int  # distinct invalid tokens cycled in the repeated-token flood
    unique_tokens: int  # never-repeated invalid tokens prepared for the unique flood
    overload_connections: int
    overload_cap: int  # max_inflight_requests of the shedding variant
    prefill_tokens: int  # tokens in the store of issue's pre-filled variant (issue 17: 5 M)
    shutdown_grace: float = 10.0
    # bytes up and down per stream-tcp round (issue 18: 1 GiB); quick: less, unless the
    # scenario is named (`--scenario stream-tcp`), see benchmarks.__main__
    tcp_stream_bytes: int = GIB

    def shorter(self, duration: float) -> Profile:
        return replace(self, duration=duration)


QUICK = Profile(
    name="quick",
    duration=5.0,
    warmup=1.0,
    rounds=1,
    connections=64,
    open_loop_rate=1000.0,
    stream_bytes=GIB,
    revoke_trials=50,
    idle_connections=10_000,
    invalid_pool=4096,
    unique_tokens=100_000,
    overload_connections=256,
    overload_cap=64,
    prefill_tokens=200_000,
    tcp_stream_bytes=256 * MIB,
)

FULL = Profile(
    name="full",
    duration=20.0,
    warmup=3.0,
    rounds=3,
    connections=64,
    open_loop_rate=1000.0,
    stream_bytes=GIB,
    revoke_trials=200,
    idle_connections=10_000,
    invalid_pool=4096,
    unique_tokens=400_000,
    overload_connections=256,
    overload_cap=64,
    prefill_tokens=5_000_000,
)

SMOKE = Profile(
    name="smoke",
    duration=0.3,
    warmup=0.0,
    rounds=1,
    connections=4,
    open_loop_rate=50.0,
    stream_bytes=MIB,
    revoke_trials=1,
    idle_connections=20,
    invalid_pool=16,
    unique_tokens=200,
    overload_connections=8,
    overload_cap=2,
    prefill_tokens=1_000,
    shutdown_grace=5.0,
    tcp_stream_bytes=MIB,
)

PROFILES = {p.name: p for p in (QUICK, FULL, SMOKE)}
