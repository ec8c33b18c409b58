"""`python -m benchmarks.mypyc_build` (`make mypyc`): the optional mypyc build of the hot
modules, written to build/mypyc/ and nowhere else (issue 17; black and mypy ship this way).

The build copies edgeauth/ into build/mypyc/ and compiles MODULES there in place, so that
directory holds the whole package: the compiled modules as extension modules, which Python's
import prefers to the .py beside them, and every other module as the same pure Python. Nothing
is written next to the sources, so the default install, `make run`, `make test` and CI never
see it, and pure Python stays the fallback: without the directory everything runs as before.

Run anything from it with `environment()` (build/mypyc first on PYTHONPATH, and
PYTHONSAFEPATH so that neither `-m` nor a worker's start puts this checkout's edgeauth/ in
front of it); the benchmark harness adds a gateway `edgeauth-mypyc` when the build is there.
A build is a snapshot: `status()` names the sources that changed since it was made, and
build/mypyc/pure/ holds the same sources uncompiled, to compare like with like.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.machinery
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mypyc"
STAMP = "BUILD.json"
HINT = "make mypyc (python -m benchmarks.mypyc_build) builds it into build/mypyc/"

# Hot modules that mypyc compiles and whose tests pass compiled.
MODULES = (
    "edgeauth/protocol.py",
    "edgeauth/server.py",
    "edgeauth/routing.py",
    "edgeauth/proxy/headers.py",
    "edgeauth/proxy/routes.py",
    "edgeauth/exchange.py",
    "edgeauth/logs.py",
    "edgeauth/rendering.py",
    "edgeauth/flowcontrol.py",
)
# Hot modules left out, and why.
EXCLUDED = {
    "edgeauth/messages.py": "Body._iterate is an async generator, which mypyc cannot compile",
    "edgeauth/proxy/upstream.py": "_once is an async generator, which mypyc cannot compile",
    "edgeauth/proxy/connection.py": "UpstreamClosed subclasses ConnectionError: mypyc "
    "compiles no subclass of a built-in exception but Exception and BaseException",
    "edgeauth/errors.py": "_codes reads the class attribute `error`, which mypyc takes for "
    "an instance attribute",
    "edgeauth/cache.py": "compiled, the Entry tuple is unboxed: every hit boxes a new tuple "
    "that the GC tracks (tests/validation/test_crypto_cache.py fails)",
    "edgeauth/validation.py": "a compiled Validator cannot be subclassed by interpreted code "
    "(tests/validation/test_validation_races.py does)",
    "edgeauth/metrics.py": "Recorder's GRANT_LABELS, ENDPOINT_LABELS and ERROR_LABELS become "
    "instance attributes: read through the class they are descriptors "
    "(tests/oauth/test_oauth_observability.py fails)",
}

_SETUP = """
import os
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="edgeauth-mypyc",
    ext_modules=mypycify(os.environ["EDGEAUTH_MYPYC_ARGS"].split("\\n"), opt_level="3"),
    script_args=["build_ext", "--inplace"],
)
"""


@dataclass(frozen=True)
class Build:
    """A compiled build found on disk."""

    directory: Path
    modules: tuple[str, ...]  # dotted names
    commit: str
    stale: tuple[str, ...]  # sources changed since the build (paths under edgeauth/)

    @property
    def pure(self) -> Path:
        """The build's sources, none compiled."""
        return self.directory / "pure"

    def describe(self) -> str:
        text = f"mypyc build of {self.commit} in {self.directory}: {', '.join(self.modules)}"
        if self.stale:
            text += f"; sources changed since: {', '.join(self.stale)} (rebuild: make mypyc)"
        return text


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def environment(directory: Path = BUILD, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (os.environ by default) with the build first on the import path."""
    env = dict(os.environ if base is None else base)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(directory), str(ROOT), path) if p)
    env["PYTHONSAFEPATH"] = "1"
    return env


def _sources(package: Path) -> dict[str, str]:
    """sha256 of every .py file under `package`, by path relative to its parent."""
    return {
        str(path.relative_to(package.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _extension(directory: Path, module: str) -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return directory / (module.replace(".", "/") + suffix)


def status(directory: Path = BUILD) -> Build | None:
    """The build in `directory` if it is complete and made for this interpreter, else None."""
    try:
        stamp: dict[str, Any] = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None
    modules = tuple(str(m) for m in stamp.get("modules", ()))
    if not modules or not all(_extension(directory, m).is_file() for m in modules):
        return None
    if not (directory / "pure" / "edgeauth").is_dir():
        return None
    built: dict[str, str] = stamp.get("sources", {})
    now = _sources(ROOT / "edgeauth")
    stale = tuple(sorted(p for p in built.keys() | now.keys() if built.get(p) != now.get(p)))
    return Build(directory, modules, str(stamp.get("commit", "?")), stale)


def loaded_from(directory: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """Where a fresh interpreter in `environment(directory)` imports each module from."""
    code = (
        "import importlib, json, sys\n"
        "json.dump({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}, sys.stdout)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *modules],
        env=environment(directory),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[str, str] = json.loads(out.stdout)
    return found


def not_compiled(build: Build) -> list[str]:
    """The build's modules that a process started from it would import as Python."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    found = loaded_from(build.directory, build.modules)
    return [m for m, path in found.items() if not path.endswith(suffix)]


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def build(modules: tuple[str, ...] = MODULES, directory: Path = BUILD) -> Build:
    """Copy edgeauth/ into a fresh `directory` and compile `modules` there (a few minutes)."""
    directory = directory.resolve()
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    shutil.copytree(ROOT / "edgeauth", staging / "edgeauth", ignore=ignore)
    # the project's mypy settings, so that mypyc sees the types `make lint` checks
    args = ["--config-file", str(ROOT / "pyproject.toml"), *modules]
    env = {**os.environ, "EDGEAUTH_MYPYC_ARGS": "\n".join(args)}
    subprocess.run([sys.executable, "-c", _SETUP], cwd=staging, env=env, check=True)
    shutil.rmtree(staging / "build")  # the C sources and objects
    shutil.copytree(staging / "edgeauth", staging / "pure" / "edgeauth", ignore=ignore)
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "edgeauth"))
    stamp = {
        "modules": [module_name(m) for m in modules],
        "commit": _git("rev-parse", "--short", "HEAD") + (" (with local changes)" if dirty else ""),
        "built": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": sys.version.split()[0],
        "mypy": _version("mypy"),
        "sources": _sources(staging / "edgeauth"),
    }
    (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    found = status(directory)
    if found is None:
        raise RuntimeError(f"the build in {directory} is incomplete")
    return found


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mypyc_build", description=__doc__)
    parser.add_argument(
        "--modules",
        help="comma-separated paths to compile instead of the default set "
        f"(default: {','.join(MODULES)})",
    )
    parser.add_argument("--out", type=Path, default=BUILD, help="build directory")
    args = parser.parse_args(argv)
    modules = tuple(args.modules.split(",")) if args.modules else MODULES
    found = build(modules, args.out)
    python = not_compiled(found)
    if python:
        sys.stderr.write(f"imported as Python, not compiled: {', '.join(python)}\n")
        return 1
    sys.stdout.write(
        f"{found.describe()}\n"
        f"Left out: {', '.join(p for p in EXCLUDED if p not in modules)}\n"
        f"Run from it: PYTHONSAFEPATH=1 PYTHONPATH={found.directory} python -m edgeauth ...\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
