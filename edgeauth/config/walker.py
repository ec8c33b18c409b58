"""The generic walker: builds a dataclass from a TOML table by following its fields' type hints.

Invariants: a bad value never raises out of the walk; it becomes one problem in the Context at its
key path and INVALID poisons its parents, so every problem is found in one pass. Unknown keys are
problems with a did-you-mean hint. Reads only files the config names (secrets, existence checks).
Relative paths start at the config file's directory, except those of files edgeauth writes
(Mark.STATE: at Context.state) and log files (the log check: at Context.logs).
"""

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from edgeauth.config.scalars import LEAVES, show, string
from edgeauth.config.schema import Address, Bad, Mark, Network, Range, identity_problem

INVALID: Any = object()  # a value already reported as a problem; poisons its parent quietly

Check = Callable[[Any, str, "Context"], Any]  # a built value, its key path → it, maybe normalised


@dataclass(slots=True)
class Context:
    """Collects problems during one walk and knows the directories relative paths start from."""

    file: str
    base: Path  # the config file's directory: files edgeauth only reads
    state: Path  # files edgeauth writes (generated secrets, the database)
    logs: Path  # log files
    checks: Mapping[type[Any], Check]  # the cross-field check run on each built dataclass
    aliases: dict[str, str] = field(default_factory=dict)  # key path → overriding env variable
    problems: list[str] = field(default_factory=list)

    def writing(self) -> "Context":
        """This walk with relative paths starting at `state`; problems still land here."""
        return replace(self, base=self.state)

    def problem(self, path: str, message: str) -> None:
        for key, variable in self.aliases.items():
            if path == key or path.startswith(key + "["):
                path = variable
                break
        self.problems.append(f"{self.file}: {path}: {message}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def secret_fields(cls: type[Any]) -> list[str]:
    return [n for n, h in hints(cls).items() if Mark.FROM_FILE in getattr(h, "__metadata__", ())]


def keys(cls: type[Any]) -> list[str]:
    """The TOML keys a table accepts: its fields plus `<name>_file` for file-backed secrets."""
    return [f.name for f in fields(cls)] + [f"{n}_file" for n in secret_fields(cls)]


def _is_table(hint: object) -> bool:
    return isinstance(hint, type) and is_dataclass(hint) and hint not in LEAVES


def convert(hint: Any, value: object, path: str, ctx: Context) -> object:
    """Turns one TOML value into `hint`'s type, or records why not and returns INVALID."""
    if value is INVALID:
        return INVALID
    try:
        return _dispatch(hint, value, path, ctx)
    except Bad as bad:
        ctx.problem(path, str(bad))
        return INVALID


def _dispatch(hint: Any, value: object, path: str, ctx: Context) -> object:
    origin, args = get_origin(hint), get_args(hint)
    if hint in LEAVES:
        return LEAVES[hint](value)
    if origin is Annotated:
        return _annotated(args[0], args[1:], value, path, ctx)
    if origin is tuple:
        return _sequence(args[0], value, path, ctx)
    if origin is Literal:
        return _choice(args, value)
    if origin in (Union, UnionType) and NoneType in args:  # "" is how TOML spells "unset"
        inner = next(arg for arg in args if arg is not NoneType)
        return None if value is None or value == "" else _dispatch(inner, value, path, ctx)
    if hint is Path:
        if value == "":
            raise Bad("expected a file path, got an empty string")
        return ctx.base / (value if isinstance(value, Path) else string(value))
    return build(hint, value, path, ctx)


def _annotated(base: Any, marks: tuple[Any, ...], value: object, path: str, ctx: Context) -> object:
    """Applies the marks declared on a field around the conversion of its base type."""
    if Mark.STATE in marks:
        ctx = ctx.writing()
    if Mark.AUTO_CPU in marks and value == "auto":
        value = min(os.cpu_count() or 1, 256)
    result = _dispatch(base, value, path, ctx)
    if isinstance(result, str):
        result = result.lower() if Mark.LOWER in marks else result
        result = result.upper() if Mark.UPPER in marks else result
    if Mark.NON_EMPTY in marks and isinstance(result, str | tuple) and len(result) == 0:
        raise Bad("must not be empty")
    if isinstance(result, str):
        _identity(result, marks)
    for mark in marks:
        if isinstance(mark, Range) and isinstance(result, int | float):
            mark.check(result)
    if Mark.EXISTS in marks and isinstance(result, Path):
        _readable_file(result)
    return result


def _identity(text: str, marks: tuple[Any, ...]) -> None:
    """Names that reach backends in identity headers (schema.identity_problem)."""
    if Mark.IDENTITY in marks or Mark.IDENTITY_KEY in marks:
        problem = identity_problem(text, key=Mark.IDENTITY_KEY in marks)
        if problem is not None:
            raise Bad(problem)


def _readable_file(file: Path) -> None:
    if not file.exists():
        raise Bad(f"file not found: {file}")
    if not file.is_file():
        raise Bad(f"not a regular file: {file}")
    if not os.access(file, os.R_OK):
        raise Bad(f"file not readable: {file}")


def _sequence(item: Any, value: object, path: str, ctx: Context) -> object:
    """Arrays become tuples; address and network lists also accept a comma-separated string."""
    if isinstance(value, str) and item in (Address, Network):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if len(parts) == 1:
            return (_dispatch(item, parts[0], path, ctx),)
        value = parts
    if not isinstance(value, list | tuple):  # a tuple is a default, never TOML
        raise Bad(f"expected an array, got {show(value)}")
    items = [convert(item, element, f"{path}[{i}]", ctx) for i, element in enumerate(value)]
    return INVALID if any(x is INVALID for x in items) else tuple(items)


def _choice(choices: tuple[Any, ...], value: object) -> object:
    if isinstance(value, str) and value in choices:
        return value
    options = ", ".join(f'"{choice}"' for choice in choices)
    hint = suggest(value, choices) if isinstance(value, str) else ""
    raise Bad(f"expected one of {options}; got {show(value)}{hint}")


def build(
    cls: type[Any],
    raw: object,
    path: str,
    ctx: Context,
    preset: Mapping[str, object] | None = None,
) -> object:
    """Builds one dataclass from a TOML table, then runs its cross-field check (if any)."""
    if not isinstance(raw, Mapping):
        raise Bad(f"expected a table, got {show(raw)}")
    table = dict(raw)
    values = dict(preset or {})
    _take_secret_files(cls, table, path, ctx)
    known = [key for key in keys(cls) if key not in values]
    for key in table:
        if key not in known:
            what = "key" if path else "section"
            ctx.problem(join(path, key), f'unknown {what} "{key}"{suggest(key, known)}')
    for f in fields(cls):
        if f.name not in values:
            values[f.name] = _field_value(f, hints(cls)[f.name], table, join(path, f.name), ctx)
    if any(value is INVALID for value in values.values()):
        return INVALID
    check = ctx.checks.get(cls)
    built = cls(**values)
    return check(built, path, ctx) if check else built


def _field_value(
    f: Field[Any], hint: Any, table: Mapping[str, object], path: str, ctx: Context
) -> object:
    """Defaults go through the same conversion as written values, so relative default paths
    are resolved and default certificate files must exist too; an absent section is {}."""
    if f.name in table:
        value = table[f.name]
    elif _is_table(hint):
        value = {}
    elif f.default is not MISSING:
        value = f.default
    else:
        ctx.problem(path, "required key is missing")
        return INVALID
    return convert(hint, value, path, ctx)


def _take_secret_files(cls: type[Any], table: dict[str, object], path: str, ctx: Context) -> None:
    """Replaces each `<name>_file` key by the file's stripped content under `<name>`."""
    for name in secret_fields(cls):
        key = f"{name}_file"
        if key not in table:
            continue
        where = join(path, key)
        file = convert(Path, table.pop(key), where, ctx)
        if name in table:
            ctx.problem(where, f'give "{name}" or "{key}", not both')
            table[name] = INVALID
        elif isinstance(file, Path):
            secret = read_secret(file, where, ctx)
            table[name] = INVALID if secret is None else secret
        else:
            table[name] = INVALID


def reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def read_secret(file: Path, path: str, ctx: Context) -> str | None:
    """Secrets come from files (systemd LoadCredential=); surrounding whitespace is never part."""
    try:
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        ctx.problem(path, f"cannot read secret file {file}: {reason(exc)}")
        return None
    if not text:
        ctx.problem(path, f"secret file {file} is empty")
        return None
    return text
