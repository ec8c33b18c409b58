"""`python -m tests.fuzz --examples N --seconds S [--survey FILE] [pytest args]`: the long
fuzz run (`make fuzz`). The hypothesis tests run N examples each, stopping early after S
seconds; the explicit corpus and regression cases run too. With --survey, every distinct
failure is recorded in FILE (the smallest example of each) instead of stopping at the first.
"""

from __future__ import annotations

import argparse
import os
import sys

import pytest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=20_000, help="examples per test")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop generating after")
    parser.add_argument("--survey", default="", help="record distinct failures in this file")
    args, rest = parser.parse_known_args(argv)
    os.environ["FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["FUZZ_SECONDS"] = str(args.seconds)
    if args.survey:
        os.environ["FUZZ_SURVEY"] = args.survey
    timeout = int(args.seconds) * 2 + 300
    return int(pytest.main(["tests/fuzz", "-q", "-o", f"timeout={timeout}", *rest]))


if __name__ == "__main__":
    sys.exit(main())
