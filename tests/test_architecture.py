"""The layering of the package, stated as data and enforced (architecture.md §3.2).

Every module of edgeauth sits in exactly one layer of LAYERS, lowest first. A module imports
only from its own layer or below, no modules import each other in a cycle, core modules import
no I/O library, only entry modules start processes, and nothing prints.

What counts as an import: every `import` and `from ... import`, relative ones resolved, those
inside functions and those under `if TYPE_CHECKING:` included. A lazy import keeps a database
driver or a subcommand unloaded; it is a dependency all the same, and none today needs an
exception. `from pkg import name` imports the submodule `pkg.name` when there is one, else
`pkg`. The parent packages Python runs on the way to a module are not counted: each
`__init__.py` is a module with a layer of its own.

Where today's code breaks the rules, KNOWN_UPWARD and KNOWN_CYCLES say so, one line of reason
each. Any other break fails, and so does a listed one that has gone: take its line out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeauth"

LAYERS: dict[str, tuple[str, ...]] = {
    # Values and rules: frozen values, parsing, the OAuth rules and endpoints (over the Store
    # protocol), the pure halves of the store backends and of `import kong`. No I/O library.
    "core": (
        "__init__.py",
        "errors.py",
        "rendering.py",
        "exitcodes.py",
        "models.py",
        "crypto.py",
        "cache.py",
        "routing.py",
        "exchange.py",
        "jsonout.py",
        "config/__init__.py",
        "config/checks.py",
        "config/env.py",
        "config/scalars.py",
        "config/schema.py",
        "config/walker.py",
        "oauth/__init__.py",
        "oauth/params.py",
        "oauth/client_auth.py",
        "oauth/scopes.py",
        "oauth/pkce.py",
        "oauth/bearer.py",
        "oauth/issuer.py",
        "oauth/policy.py",
        "oauth/throttle.py",
        "oauth/authorize.py",
        "oauth/token_endpoint.py",
        "oauth/introspect.py",
        "oauth/grants/__init__.py",
        "oauth/grants/base.py",
        "oauth/grants/authorization_code.py",
        "oauth/grants/client_credentials.py",
        "oauth/grants/password.py",
        "oauth/grants/provisioned.py",
        "oauth/grants/refresh_token.py",
        "store/base.py",
        "store/rows.py",
        "store/rules.py",
        "store/sql.py",
        "store/core.py",
        "store/sqlite_schema.py",
        "store/postgres_schema.py",
        "proxy/__init__.py",
        "proxy/headers.py",
        "admin/__init__.py",
        "admin/auth.py",
        "admin/schemas.py",
        "admin/views.py",
        "admin/ui/__init__.py",
        "admin/ui/session.py",
        "kong/model.py",
        "kong/plan.py",
        "kong/services.py",
        "kong/render.py",
    ),
    # Adapters: each turns one kind of I/O into calls on the core. The downstream HTTP protocol,
    # the proxy and OAuth handlers, the store backends, TLS, logs, metrics, the revocation paths.
    "adapters": (
        "messages.py",
        "flowcontrol.py",
        "protocol.py",
        "listener.py",
        "tls.py",
        "logs.py",
        "audit.py",
        "metrics.py",
        "bus.py",
        "sdnotify.py",
        "bootstrap.py",
        "revocations.py",
        "feed.py",
        "validation.py",
        "anonymous.py",
        "proxy/connection.py",
        "proxy/upstream.py",
        "proxy/routes.py",
        "oauth/routes.py",
        "store/__init__.py",
        "store/batch.py",
        "store/sqlite.py",
        "store/postgres.py",
        "store/postgres_listen.py",
        "kong/apply.py",
        "kong/deck_source.py",
        "kong/pg_source.py",
    ),
    # Applications: what one process serves. The gateway, the admin API, the status listener.
    "apps": (
        "server.py",
        "status.py",
        "admin/app.py",
        "admin/http.py",
        "admin/consumers.py",
        "admin/credentials.py",
        "admin/tokens.py",
        "admin/trail.py",
        "admin/declared.py",
        "admin/status.py",
        "admin/ui/pages.py",
        "admin/ui/app.py",
    ),
    # Processes: the supervisor and its workers, and the programs `edgeauth demo` runs.
    "processes": (
        "supervisor.py",
        "worker.py",
        "demo.py",
        "sample_backend.py",
    ),
    # The command line: argv, streams, exit codes; the admin client and `import kong`.
    "cli": (
        "cli.py",
        "__main__.py",
        "admin_client.py",
        "completion.py",
        "kong/command.py",
    ),
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}

# Imports that go up a layer today: (importer, imported) → why it is wrong.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
# Import cycles today: the modules of one cycle → why it is wrong.
KNOWN_CYCLES: dict[frozenset[str], str] = {}

IO_LIBRARIES = {
    "aiohttp",
    "aiosqlite",
    "asyncpg",
    "httptools",
    "prometheus_client",
    "socket",
    "ssl",
    "uvloop",
}
# Only these modules may start processes; argv and sys.exit stay in cli.py.
ENTRY = {"cli.py", "supervisor.py", "demo.py", "__main__.py", "sample_backend.py"}
EXIT_CODES = "exitcodes.py"


def _modules() -> dict[str, str]:
    """Dotted name → path relative to the package, for every module of edgeauth."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path.relative_to(PACKAGE).as_posix()
    return found


MODULES = _modules()


def _imports(source: str, name: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(module, name imported from it or None) for every import of the module `name`."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield from ((base, alias.name) for alias in node.names)


def _edges(source: str, name: str, is_package: bool, modules: Mapping[str, str]) -> set[str]:
    """The modules of the package that the module `name` imports, as paths."""
    targets = set()
    for base, imported in _imports(source, name, is_package):
        dotted = f"{base}.{imported}" if f"{base}.{imported}" in modules else base
        if dotted in modules and dotted != name:
            targets.add(modules[dotted])
    return targets


def _graph() -> dict[str, set[str]]:
    """Path → paths it imports, over the whole package."""
    return {
        path: _edges((PACKAGE / path).read_text(), name, path.endswith("__init__.py"), MODULES)
        for name, path in MODULES.items()
    }


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _cycles(graph: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module."""
    reach = {node: _reachable(graph, node) for node in graph}
    return {
        frozenset({node} | {other for other in reach[node] if node in reach[other]})
        for node in graph
        if node in reach[node]
    }


def test_every_module_has_exactly_one_layer() -> None:
    placed = [module for modules in LAYERS.values() for module in modules]
    assert len(placed) == len(set(placed)), "a module is listed in two layers"
    unplaced = sorted(set(MODULES.values()) - set(placed))
    gone = sorted(set(placed) - set(MODULES.values()))
    assert not unplaced, f"add each to a layer of LAYERS in tests/test_architecture.py: {unplaced}"
    assert not gone, f"listed in LAYERS but not in the package: {gone}"


def test_imports_never_go_up_a_layer() -> None:
    upward = {
        (module, target): f"{LAYER_OF[module]} imports {LAYER_OF[target]}"
        for module, targets in _graph().items()
        for target in targets
        if module in LAYER_OF
        and target in LAYER_OF  # the unplaced fail the test above
        and RANK[LAYER_OF[target]] > RANK[LAYER_OF[module]]
    }
    new = {edge: why for edge, why in upward.items() if edge not in KNOWN_UPWARD}
    fixed = sorted(set(KNOWN_UPWARD) - set(upward))
    assert not new, f"imports that go up a layer: {new}"
    assert not fixed, f"fixed, so take these out of KNOWN_UPWARD: {fixed}"


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    new = [sorted(cycle) for cycle in cycles - set(KNOWN_CYCLES)]
    fixed = [sorted(cycle) for cycle in set(KNOWN_CYCLES) - cycles]
    assert not new, f"modules that import each other: {new}"
    assert not fixed, f"fixed (or changed), so update KNOWN_CYCLES: {fixed}"


def test_the_graph_sees_relative_lazy_and_type_checking_imports() -> None:
    modules = {
        "edgeauth.a": "a/__init__.py",
        "edgeauth.a.b": "a/b.py",
        "edgeauth.a.c": "a/c.py",
        "edgeauth.d": "d.py",
        "edgeauth.e": "e.py",
    }
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import c\n"
        "from ..d import thing\n"
        "if TYPE_CHECKING:\n"
        "    from edgeauth.a import Name\n"
        "def later() -> None:\n"
        "    import edgeauth.e\n"
    )
    assert _edges(source, "edgeauth.a.b", False, modules) == {
        "a/c.py",
        "d.py",
        "a/__init__.py",
        "e.py",
    }
    assert _edges("from .b import x\n", "edgeauth.a", True, modules) == {"a/b.py"}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert _cycles(graph) == {frozenset("abc"), frozenset("de")}


@pytest.mark.parametrize("module", LAYERS["core"])
def test_core_modules_import_no_io_library(module: str) -> None:
    name = next(name for name, path in MODULES.items() if path == module)
    source = (PACKAGE / module).read_text()
    roots = {
        base.split(".")[0] for base, _ in _imports(source, name, module.endswith("__init__.py"))
    }
    assert not roots & IO_LIBRARIES, f"{module} imports {roots & IO_LIBRARIES}"


def test_only_entry_modules_spawn_processes() -> None:
    assert set(MODULES.values()) >= ENTRY
    for name, path in MODULES.items():
        if path in ENTRY:
            continue
        source = (PACKAGE / path).read_text()
        roots = {
            base.split(".")[0] for base, _ in _imports(source, name, path.endswith("__init__.py"))
        }
        assert not roots & {"subprocess", "multiprocessing"}, path


def test_exit_codes_are_defined_only_in_exitcodes() -> None:
    for path in MODULES.values():
        if path == EXIT_CODES:
            continue
        for node in ast.parse((PACKAGE / path).read_text()).body:
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                assert not [n for n in names if n.startswith("EX_")], f"{path}: {names}"


def test_no_print_in_the_package() -> None:
    for path in MODULES.values():
        for node in ast.walk(ast.parse((PACKAGE / path).read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"print() in {path}"
