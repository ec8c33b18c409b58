"""`python -m benchmarks.mypyc_compare [--rounds N]`: the proxy scenario's GET through the
pure-Python gateway and through one run from the mypyc build (`make mypyc`), turn about in
one harness run, with the naive and floor proxies; prints the medians and the ratios.

On a shared machine two runs differ by more than the build does, so the two gateways (same
configuration, one worker pinned, access log on) are measured alternately, swapping which goes
first every round, and the ratio of each round's pair is reported beside the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import mypyc_build
from benchmarks.profiles import QUICK
from benchmarks.runner import Bench, Server
from benchmarks.scenarios.common import get_spec
from benchmarks.scenarios.proxy import LABEL, MYPYC

PURE = "edgeauth"
NAMES = (PURE, MYPYC, "naive", "floor")


def compare(
    build: mypyc_build.Build, rounds: int, seconds: float
) -> dict[str, list[tuple[float, float]]]:
    """(req/s, CPU µs per request) of every round, by target."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in NAMES}
    with (
        tempfile.TemporaryDirectory(prefix="edgeauth-mypyc-compare-") as tmp,
        Bench(QUICK.shorter(seconds), Path(tmp), mypyc=False) as bench,
        bench.gateway(name=PURE, tree=build.pure) as pure,
        bench.gateway(name=MYPYC, tree=build.directory) as compiled,
    ):
        gateways: list[Server] = [pure, compiled]
        others: list[Server] = [bench.naive(), bench.floor()]
        for i in range(rounds):
            for target in (gateways if i % 2 == 0 else gateways[::-1]) + others:
                m = bench.measure(target, LABEL, get_spec(bench, target))
                samples[target.name].append((m.rps, m.cpu_us_per_request or 0.0))
    return samples


def _median(values: list[float]) -> float:
    found = [v for v in values if v]
    return statistics.median(found) if found else 0.0


def _ratios(a: list[tuple[float, float]], b: list[tuple[float, float]], i: int) -> list[float]:
    return [x[i] / y[i] for x, y in zip(a, b, strict=True) if x[i] and y[i]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mypyc_compare", description=__doc__)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds a run")
    parser.add_argument(
        "--build",
        type=Path,
        default=mypyc_build.BUILD,
        help="the build directory (default build/mypyc; make mypyc MYPYC_ARGS=--out makes others)",
    )
    args = parser.parse_args(argv)
    build = mypyc_build.status(args.build.resolve())
    if build is None:
        sys.stderr.write(f"no mypyc build: {mypyc_build.HINT}\n")
        return 2
    python = mypyc_build.not_compiled(build)
    if python:
        sys.stderr.write(f"the build imports these as Python: {', '.join(python)}\n")
        return 2
    out = sys.stdout
    out.write(f"{build.describe()}\n")
    samples = compare(build, args.rounds, args.seconds)
    medians = {}
    for name, values in samples.items():
        rps, cpu = _median([v[0] for v in values]), _median([v[1] for v in values])
        medians[name] = rps
        out.write(f"{name:<15} median {rps:>8,.0f} req/s, {cpu:6.1f} µs CPU per request\n")
    pure, compiled = samples[PURE], samples[MYPYC]
    rps_pairs, cpu_pairs = _ratios(compiled, pure, 0), _ratios(compiled, pure, 1)
    out.write(
        f"{MYPYC}/{PURE} per round: req/s {' '.join(f'{r:.3f}' for r in rps_pairs)}; "
        f"CPU per request {' '.join(f'{r:.3f}' for r in cpu_pairs)}\n"
        f"{MYPYC}/{PURE} median of rounds: req/s {_median(rps_pairs):.3f}, "
        f"CPU per request {_median(cpu_pairs):.3f}\n"
    )
    for other in ("floor", "naive"):
        if medians[other]:
            out.write(
                f"vs {other}: {PURE} {medians[PURE] / medians[other]:.3f}, "
                f"{MYPYC} {medians[MYPYC] / medians[other]:.3f}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
