"""`python -m benchmarks.compare --base REV [--rounds N]`: the proxy scenario's GET, this
working tree's gateway against REV's, in alternating rounds of one harness run.

A change to the HTTP legs must not cost the speed back; on a shared machine two separate runs
differ by more than the change, so both gateways (and the naive proxy, the usual baseline)
are measured turn about against the same backend, and medians are compared. REV is checked
out with `git worktree` into a temporary directory, and its gateway runs from there with it
first on PYTHONPATH (so that `-m edgeauth` finds REV's package, not this checkout's).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.profiles import QUICK
from benchmarks.runner import Bench, Server
from benchmarks.scenarios.common import get_spec
from benchmarks.scenarios.proxy import LABEL

ROOT = Path(__file__).resolve().parent.parent


def _worktree(rev: str, into: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(into), rev],
        check=True,
        capture_output=True,
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def compare(base: str, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Median req/s and CPU µs per request of `this`, `base` and `naive` over `rounds`."""
    samples: dict[str, list[tuple[float, float]]] = {"this": [], "base": [], "naive": []}
    with tempfile.TemporaryDirectory(prefix="edgeauth-compare-") as tmp:
        tree = Path(tmp) / "base"
        _worktree(base, tree)
        try:
            command = [
                *("env", f"--chdir={tree}", f"PYTHONPATH={tree}"),
                *(sys.executable, "-m", "edgeauth", "serve"),
            ]
            with (
                Bench(QUICK.shorter(seconds), Path(tmp) / "work") as bench,
                bench.gateway(name="this") as this,
                bench.gateway(name="base", command=command) as old,
            ):
                targets: list[tuple[str, Server]] = [
                    ("this", this),
                    ("base", old),
                    ("naive", bench.naive()),
                ]
                for i in range(rounds):
                    order = targets if i % 2 == 0 else [targets[1], targets[0], targets[2]]
                    for name, target in order:
                        m = bench.measure(target, LABEL, get_spec(bench, target))
                        samples[name].append((m.rps, m.cpu_us_per_request or 0.0))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )
    return {
        name: {
            "rps": _median([rps for rps, _ in values]),
            "cpu_us": _median([cpu for _, cpu in values if cpu]),
        }
        for name, values in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds a run")
    args = parser.parse_args(argv)
    medians = compare(args.base, args.rounds, args.seconds)
    for name, m in medians.items():
        print(f"{name:<6} median {m['rps']:,.0f} req/s, {m['cpu_us']:.1f} µs CPU per request")
    this, base, naive = medians["this"], medians["base"], medians["naive"]
    rps, cpu = this["rps"] / base["rps"], this["cpu_us"] / base["cpu_us"]
    print(f"this/base: req/s {rps:.3f}, CPU per request {cpu:.3f}")
    print(
        f"this/naive {this['rps'] / naive['rps']:.3f}, base/naive {base['rps'] / naive['rps']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
