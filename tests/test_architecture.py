"""The layering of architecture.md §3.2, enforced: pure modules never import I/O libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeauth"
IO_LIBRARIES = {"aiohttp", "aiosqlite", "asyncpg", "ssl", "socket", "uvloop"}
PURE = [
    "errors.py",
    "exchange.py",
    "models.py",
    "crypto.py",
    "cache.py",
    "routing.py",
    "proxy/headers.py",
    *(f"config/{p.name}" for p in (PACKAGE / "config").glob("*.py")),
    *(f"oauth/{p.name}" for p in (PACKAGE / "oauth").glob("*.py") if p.name != "routes.py"),
]
# Only these modules may start processes or touch argv / sys.exit.
ENTRY = {"cli.py", "supervisor.py", "demo.py", "__main__.py", "sample_backend.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module: str) -> None:
    roots = {name.split(".")[0] for name in _imports(PACKAGE / module)}
    assert not roots & IO_LIBRARIES, f"{module} imports {roots & IO_LIBRARIES}"


def test_only_entry_modules_spawn_processes() -> None:
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ENTRY:
            continue
        assert "subprocess" not in _imports(path), rel


def test_no_print_in_the_package() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"print() in {path.relative_to(PACKAGE)}"
