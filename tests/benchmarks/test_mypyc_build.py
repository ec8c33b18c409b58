"""The optional mypyc build's bookkeeping (benchmarks/mypyc_build.py), without compiling: a
build directory is found only when complete, names the sources changed since it was made, and
a process started from it imports its package before this checkout's."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
from pathlib import Path

from benchmarks import mypyc_build

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
MODULES = ("edgeauth.protocol", "edgeauth.proxy.headers")


def _fake_build(directory: Path, sources: dict[str, str]) -> None:
    """What a build leaves, with empty files for the extension modules."""
    for module in MODULES:
        path = directory / (module.replace(".", "/") + SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (directory / "pure" / "edgeauth").mkdir(parents=True)
    stamp = {"modules": list(MODULES), "commit": "abc1234", "sources": sources}
    (directory / mypyc_build.STAMP).write_text(json.dumps(stamp))


def _checkout_sources() -> dict[str, str]:
    package = mypyc_build.ROOT / "edgeauth"
    return {
        str(p.relative_to(package.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_no_build_is_found_where_none_was_made(tmp_path: Path) -> None:
    assert mypyc_build.status(tmp_path) is None
    (tmp_path / mypyc_build.STAMP).write_text("{not json")
    assert mypyc_build.status(tmp_path) is None


def test_a_build_missing_a_compiled_module_is_not_found(tmp_path: Path) -> None:
    _fake_build(tmp_path, _checkout_sources())
    assert mypyc_build.status(tmp_path) is not None
    (tmp_path / ("edgeauth/proxy/headers" + SUFFIX)).unlink()
    assert mypyc_build.status(tmp_path) is None


def test_a_build_names_the_sources_changed_since(tmp_path: Path) -> None:
    sources = _checkout_sources()
    sources["edgeauth/protocol.py"] = "0" * 64
    sources["edgeauth/gone.py"] = "0" * 64
    _fake_build(tmp_path, sources)
    build = mypyc_build.status(tmp_path)
    assert build is not None
    assert build.modules == MODULES
    assert build.stale == ("edgeauth/gone.py", "edgeauth/protocol.py")
    assert "edgeauth/protocol.py" in build.describe()
    assert "make mypyc" in build.describe()


def test_a_process_started_from_a_build_imports_its_package(tmp_path: Path) -> None:
    # run from the checkout's root, where `-m` and the editable install would find edgeauth/
    (tmp_path / "edgeauth").mkdir()
    (tmp_path / "edgeauth" / "__init__.py").write_text("")
    (tmp_path / "edgeauth" / "protocol.py").write_text("")
    found = mypyc_build.loaded_from(tmp_path, ("edgeauth.protocol",))
    assert found == {"edgeauth.protocol": str(tmp_path / "edgeauth" / "protocol.py")}
    env = mypyc_build.environment(tmp_path, {"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(":") == [str(tmp_path), str(mypyc_build.ROOT), "/elsewhere"]
    assert env["PYTHONSAFEPATH"] == "1"
