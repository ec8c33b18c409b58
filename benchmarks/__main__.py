"""`python -m benchmarks [--full] [--scenario NAME]...`: run the scenarios, print the table and
write benchmarks/results/<timestamp>/ (results.json, report.md, PNG plots).

Everything it needs is started on loopback ports it picks (sample backend, gateways, nginx,
the naive proxy) and stopped on the way out, whatever happens (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import mypyc_build, report
from benchmarks.procs import raise_fd_limit
from benchmarks.profiles import FULL, GIB, QUICK, Profile
from benchmarks.runner import Bench, progress, run_scenario
from benchmarks.scenarios import SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results"


def run(
    names: Sequence[str],
    profile: Profile,
    *,
    tool: str = "auto",
    pin: bool = True,
    static: str = "auto",
    say: Callable[[str], None] = progress,
    command_line: str = "",
    keep_logs: Path | None = None,
    mypyc: bool = True,
) -> dict[str, Any]:
    """Run the named scenarios in one harness; the whole record (what results.json holds).
    `keep_logs`: a directory to copy the started processes' output into; `mypyc`: measure the
    compiled build too when it is there (benchmarks/mypyc_build.py)."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    fds = raise_fd_limit()
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    machine = report.machine()
    with (
        tempfile.TemporaryDirectory(prefix="edgeauth-bench-") as tmp,
        Bench(profile, Path(tmp), tool=tool, pin=pin, static=static, say=say, mypyc=mypyc) as bench,
    ):
        say(f"{bench.layout.describe()}; load generator: {bench.tool}; open files: {fds}")
        say(bench.mypyc.describe() if bench.mypyc else f"no mypyc build ({mypyc_build.HINT})")
        scenarios = [
            run_scenario(bench, name, SCENARIOS[name].run, SCENARIOS[name].description)
            for name in names
        ]
        configs = dict(bench.configs)
        commands = list(dict.fromkeys(bench.procs.commands))
        layout = bench.layout.describe()
        used_tool = bench.tool
        backends = dict(bench.backend_names)
        bench.procs.close()
        if keep_logs is not None and bench.procs.log_dir.exists():
            shutil.copytree(bench.procs.log_dir, keep_logs, dirs_exist_ok=True)
    return {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "seconds": round(time.monotonic() - clock, 1),
        "command_line": command_line or "python -m benchmarks",
        "profile": asdict(profile),
        "tool": used_tool,
        "layout": layout,
        "backends": backends,
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "scenarios": [s.to_json() for s in scenarios],
        "configs": configs,
        "commands": [list(c) for c in commands],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="edgeauth benchmarks: every figure against baselines measured in the same run",
    )
    parser.add_argument("--full", action="store_true", help="long runs (default: quick profile)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--tool",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="load generator for closed-loop runs (auto: wrk when installed)",
    )
    parser.add_argument(
        "--static-backend",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="what serves the throughput scenarios' fixed JSON (auto: nginx when installed)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--no-mypyc",
        action="store_true",
        help="leave the compiled build (make mypyc) out of the proxy scenario",
    )
    parser.add_argument("--duration", type=float, help="seconds per measured load (override)")
    parser.add_argument(
        "--out", type=Path, help="results directory (default: a new timestamped one)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every context manager: all is stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for scenario in SCENARIOS.values():
            sys.stdout.write(f"{scenario.name:<10} {scenario.description}\n")
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    profile = FULL if args.full else QUICK
    if args.duration:
        profile = replace(profile, duration=args.duration)
    if args.scenario and "stream-tcp" in args.scenario:
        profile = replace(profile, tcp_stream_bytes=GIB)  # named: the 1 GiB
    names = args.scenario or list(SCENARIOS)
    line = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = args.out or RESULTS / stamp
    record = run(
        names,
        profile,
        tool=args.tool,
        pin=not args.no_pin,
        static=args.static_backend,
        command_line=line.strip(),
        keep_logs=directory / "logs",
        mypyc=not args.no_mypyc,
    )
    path = report.write(record, directory)
    report.emit(report.table(record))
    report.emit(f"\nReport: {os.path.relpath(path)} (run time {record['seconds']:.0f} s)\n")
    failed = [s["name"] for s in record["scenarios"] if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
