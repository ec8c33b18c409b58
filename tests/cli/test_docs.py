"""The docs cannot drift from the code (issue 15): every `edgeauth …` command line in README.md,
deploy/README.md and config.toml parses with the CLI's own parser, every config key they name
exists in the schema, config.toml shows every key the schema has, and every file of the
repository the docs name (`tests/…`, `edgeauth/…`) exists.

Rules. A command line is found in a code block (or an inline code span) where a word
`edgeauth` (or a path ending in /edgeauth) is followed by a subcommand or an option, and is
not itself an option's value (`-u edgeauth`); it ends at a shell operator or a comment.
A concrete line (no `[`, `(`, `...` or CAPITALS placeholder) must parse whole, `<x>` standing
for a value. A synopsis (with them), and every inline span, is checked for what it names: the
chain of subcommands exists and every `--option` belongs to the command it follows. A config key
is named as `section.key`, `[section] key` or a table header, or is a key of a ```toml block;
`name_file` counts for a key that may be read from a file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import tomllib
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from edgeauth.cli import _parser
from edgeauth.config.schema import Mark, Settings
from tests.conftest import ROOT

DOCS = (ROOT / "README.md", ROOT / "deploy" / "README.md")
CONFIG = ROOT / "config.toml"
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&"}
PLACEHOLDER = re.compile(r"<[A-Za-z_][^<>()]*>")
CAPITALS = re.compile(r"[A-Z][A-Z0-9_]+")
NOT_THE_COMMAND = {"alias", "systemctl", "useradd", "chown"}


# ---- the schema ----------------------------------------------------------------------------


def _nested(hint: Any) -> type | None:
    """The settings dataclass a field holds (alone, optional, or as a tuple of them)."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (types.UnionType, typing.Union, tuple):
        inner = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
        return _nested(inner[0]) if len(inner) == 1 else None
    if isinstance(hint, type) and hint.__name__.endswith("Settings"):
        return hint  # a table (Address, also a dataclass, is a value)
    return None


def _keys(cls: type) -> dict[str, type | None]:
    """A settings table's keys: each field, a FROM_FILE field's `_file` sibling, and the
    dataclass of a field that is a table itself (else None)."""
    keys: dict[str, type | None] = {}
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue  # set by the loader, never a TOML key
        hint = hints[f.name]
        keys[f.name] = _nested(hint)
        if Mark.FROM_FILE in getattr(hint, "__metadata__", ()):
            keys[f"{f.name}_file"] = None
    return keys


def _tables() -> dict[str, list[type]]:
    """Every table name (top-level like `server`, nested like `oauth2`, dotted like
    `services.routes`) and the settings classes it may be."""
    tables: dict[str, list[type]] = {}

    def visit(prefix: str, cls: type) -> None:
        for name, table in _keys(cls).items():
            if table is None:
                continue
            for key in {name, f"{prefix}.{name}" if prefix else name}:
                tables.setdefault(key, []).append(table)
            visit(f"{prefix}.{name}" if prefix else name, table)

    visit("", Settings)
    return tables


TABLES = _tables()


def _key_problem(table: str, key: str | None) -> str | None:
    if table not in TABLES:
        return f"no table [{table}]"
    if key is not None and not any(key in _keys(cls) for cls in TABLES[table]):
        return f"no key {key!r} in [{table}]"
    return None


def _walk_toml(doc: dict[str, Any], cls: type, where: str) -> Iterator[str]:
    keys = _keys(cls)
    for key, value in doc.items():
        if key not in keys:
            yield f"{where}: unknown key {key!r}"
            continue
        table = keys[key]
        if table is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            yield from _walk_toml(item, table, f"{where}.{key}")


# ---- reading the docs ----------------------------------------------------------------------


def _code_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every fenced block, shell line continuations joined."""
    for match in re.finditer(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M):
        yield match.group(1), re.sub(r"\\\n\s*", " ", match.group(2))


def _inline_spans(text: str) -> list[str]:
    without_blocks = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", without_blocks)


def _commands(line: str) -> Iterator[list[str]]:
    """The words after each `edgeauth` that starts a command on one shell line, up to a
    comment (which may hold a command of its own, found separately)."""
    words = PLACEHOLDER.sub("x", line).split()
    for i, word in enumerate(words[:-1]):
        program = word.removeprefix("<(").removeprefix("(")
        if program != "edgeauth" and not program.endswith("/edgeauth"):
            continue
        before = words[i - 1] if i else ""
        if before.startswith("-") or before in NOT_THE_COMMAND:
            continue  # the user, group or unit named edgeauth
        if not re.fullmatch(r"-.*|[a-z][a-z-]*", words[i + 1]):
            continue
        rest = words[i + 1 :]
        yield rest[: next((j for j, w in enumerate(rest) if w.startswith("#")), len(rest))]


def _shell_cut(args: list[str]) -> list[str]:
    """A concrete command's own arguments: up to a shell operator or a closing `)`."""
    own = []
    for arg in args:
        if arg in SHELL_OPERATORS:
            break
        own.append(arg.rstrip(")") if "(" not in arg else arg)
    return own


def _is_synopsis(args: list[str]) -> bool:
    marks = ("[", "(", "...")
    return any(mark in arg for arg in args for mark in marks) or any(
        CAPITALS.fullmatch(arg) for arg in args
    )


def _found() -> list[tuple[str, str, bool]]:
    """(where, command text, whole) for every command the docs show; `whole` when it must
    parse as written."""
    found = []
    for path in (*DOCS, CONFIG):
        text = path.read_text()
        for _, body in [] if path.suffix == ".toml" else _code_blocks(text):
            for line in body.splitlines():
                for args in _commands(line):
                    whole = not _is_synopsis(args)
                    found.append((path.name, " ".join(_shell_cut(args) if whole else args), whole))
        spans = _inline_spans(text) if path.suffix == ".md" else re.findall(r"`([^`]+)`", text)
        found += [(path.name, " ".join(args), False) for s in spans for args in _commands(s)]
    return found


FOUND = _found()


# ---- the CLI -------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _parse_whole(args: list[str]) -> str | None:
    """Why the CLI's parser refuses `args`, or None."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            _parser().parse_args(args)
    except SystemExit as exc:  # --help, --version: 0
        return None if exc.code == 0 else f"exit {exc.code}: {out.getvalue()}"
    except Exception as exc:  # the parser's usage error
        return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
    return None


def _names_problem(args: list[str]) -> str | None:
    """Why a synopsis names a subcommand or option the CLI does not have, or None.
    Alternatives at one level (`consumers | apps | tokens`) must each be a subcommand."""
    parser: argparse.ArgumentParser = _parser()
    words = [w for arg in args for w in re.split(r"[\[\]()|,]+", arg) if w]
    i = 0
    while i < len(words):
        word, choices = words[i], _subcommands(parser)
        i += 1
        if word.startswith("-"):
            if word.split("=", 1)[0] not in parser._option_string_actions:
                return f"no option {word} for {parser.prog}"
        elif choices and re.fullmatch(r"[a-z][a-z-]*", word):
            if word not in choices:
                return f"no command {word!r} in {parser.prog}"
            while i < len(words) and words[i] in choices:
                i += 1  # another alternative at this level
            parser = choices[word]
    return None


def test_the_docs_show_commands_and_the_finder_sees_the_known_ones() -> None:
    shown = {text for _, text, _ in FOUND}
    assert "check-config -c config.toml" in shown
    assert "tokens list -c /etc/edgeauth/config.toml" in shown  # deploy/README's alias lines
    assert "completion bash" in shown  # inside `source <(...)` and before a pipe
    assert not any(text.startswith(("-f", "-o", "config.toml")) for text in shown), shown


@pytest.mark.parametrize(
    ("where", "command"),
    sorted({(where, text) for where, text, whole in FOUND if whole}),
)
def test_every_command_line_parses(where: str, command: str) -> None:
    problem = _parse_whole(shlex.split(command))
    assert problem is None, f"{where}: `edgeauth {command}`: {problem}"


@pytest.mark.parametrize(
    ("where", "command"),
    sorted({(where, text) for where, text, _ in FOUND}),
)
def test_every_command_and_option_named_exists(where: str, command: str) -> None:
    problem = _names_problem(command.split())
    assert problem is None, f"{where}: `edgeauth {command}`: {problem}"


# ---- config keys ---------------------------------------------------------------------------

DOTTED = re.compile(r"([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)(?:\s*=.*)?")
BRACKETED = re.compile(r"\[\[?([a-z][a-z0-9_.]*)\]\]?(?:\s+([a-z][a-z0-9_]*))?(?:\s*=.*)?")


def _named_keys(text: str) -> Iterator[tuple[str, str | None]]:
    """(table, key or None) for every config key or table an inline span names."""
    for span in _inline_spans(text):
        if match := BRACKETED.fullmatch(span.strip()):
            yield match.group(1), match.group(2)
        elif (match := DOTTED.fullmatch(span.strip())) and match.group(1).split(".")[0] in TABLES:
            table, _, key = match.group(1).rpartition(".")
            if key != "py":  # a module: server.py, cache.py
                yield table, key


def test_every_config_key_the_docs_name_exists() -> None:
    problems = []
    for path in DOCS:
        text = path.read_text()
        named = list(_named_keys(text))
        problems += [
            f"{path.name}: `{table}{'.' + key if key else ''}`: {problem}"
            for table, key in named
            if (problem := _key_problem(table, key))
        ]
        for lang, body in _code_blocks(text):
            if lang == "toml":
                problems += _walk_toml(tomllib.loads(body), Settings, f"{path.name} toml block")
    assert ("server", "workers") in _named_keys("`server.workers` `[admin] listen`")
    assert problems == []


def _commented_keys(text: str) -> Iterator[tuple[str, str]]:
    """(table, key) of every commented-out `# key = value` in config.toml, in its table or in
    a commented-out `# [[table]]` (an example block, such as [[streams]])."""
    table = ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\s*\[\[?([a-z0-9_.]+)\]\]?.*|# \[\[([a-z0-9_.]+)\]\].*", line):
            table = header.group(1) or header.group(2)
        elif example := re.fullmatch(r"\s*# ([a-z][a-z0-9_]*) = .*", line):
            yield table, example.group(1)


def test_config_toml_shows_every_key_and_only_real_ones() -> None:
    text = CONFIG.read_text()
    assert list(_walk_toml(tomllib.loads(text), Settings, "config.toml")) == []
    commented = list(_commented_keys(text))
    assert [f"{t}.{k}" for t, k in commented if _key_problem(t, k)] == []
    shown = set(re.findall(r"\b([a-z][a-z0-9_]*) =", text)) | set(TABLES)
    missing = {
        f"{table}.{key}"
        for table, classes in TABLES.items()
        for cls in classes
        for key in _keys(cls)
        if key not in shown
    }
    missing |= {key for key in _keys(Settings) if key not in shown}
    assert missing == set(), "config.toml claims to show every key"


# ---- paths ---------------------------------------------------------------------------------

PATH_DOCS = (*DOCS, ROOT / "SECURITY.md", ROOT / "benchmarks" / "README.md")
NAMED_PATH = re.compile(r"`((?:tests|edgeauth|benchmarks|deploy)/[A-Za-z0-9_./-]*[A-Za-z0-9_/])`")


def test_every_repository_path_the_docs_name_exists() -> None:
    """Moving or renaming a file (tests mirror the package) must take the docs along."""
    named = [(doc.name, path) for doc in PATH_DOCS for path in NAMED_PATH.findall(doc.read_text())]
    assert ("SECURITY.md", "tests/fuzz/regressions.py") in named
    assert [(doc, path) for doc, path in named if not (ROOT / path).exists()] == []


def test_the_module_map_names_every_module() -> None:
    """The README's module map is where a reader looks for a part: a new or renamed module of
    the package's top level or of store/ (whose files the map names one by one) must be there,
    and so must every subpackage."""
    readme = (ROOT / "README.md").read_text()
    package = ROOT / "edgeauth"
    files = [*package.glob("*.py"), *(package / "store").glob("*.py")]
    named = [f.name for f in files if f.name not in ("__init__.py", "__main__.py")]
    assert "core.py" in named
    missing = [name for name in named if f"`{name}`" not in readme and f"/{name}`" not in readme]
    packages = [d.name for d in package.iterdir() if (d / "__init__.py").exists()]
    missing += [f"{name}/" for name in packages if f"`{name}/" not in readme]
    assert missing == []
