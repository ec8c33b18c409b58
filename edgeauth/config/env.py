"""Environment overrides: EDGEAUTH_<SECTION>_<KEY> replaces one scalar key before validation.

Invariants: only keys of the one-table sections (server, admin, store, cache, log, status,
metrics) can be overridden; other EDGEAUTH_* names are left alone; the walker validates
overridden values like written ones and reports their problems under the variable's name
(Context.aliases).
"""

from collections.abc import Mapping
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from edgeauth.config.schema import Settings
from edgeauth.config.walker import Context, hints, keys, secret_fields, suggest

_ENV_PREFIX = "EDGEAUTH_"
_ENV_SECTIONS = ("server", "admin", "store", "cache", "log", "status", "metrics")
_ENV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _from_env(hint: Any, text: str) -> object:
    """Parses text as the field's scalar type; unparsable text is left for the walker to report."""
    while get_origin(hint) in (Annotated, Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if hint is bool:
        return _ENV_BOOLS.get(text.strip().lower(), text)
    try:
        return hint(text) if hint in (int, float) else text
    except ValueError:
        return text


def apply_environ(
    data: Mapping[str, object], environ: Mapping[str, str], ctx: Context
) -> dict[str, object]:
    """EDGEAUTH_<SECTION>_<KEY> replaces one key; other EDGEAUTH_* names belong to others."""
    merged = dict(data)
    for variable in sorted(environ):
        section, _, key = variable.removeprefix(_ENV_PREFIX).lower().partition("_")
        if not variable.startswith(_ENV_PREFIX) or section not in _ENV_SECTIONS:
            continue
        cls = hints(Settings)[section]
        if key not in keys(cls):
            ctx.problem(variable, f'unknown key "{key}" in [{section}]{suggest(key, keys(cls))}')
            continue
        table = merged.get(section, {})
        if isinstance(table, Mapping):  # else the walker reports the section's type
            table = dict(table)
            for name in secret_fields(cls):  # a file-backed secret replaces its sibling too
                if key in (name, f"{name}_file"):
                    table.pop(name, None)
                    table.pop(f"{name}_file", None)
            table[key] = _from_env(hints(cls).get(key, str), environ[variable])
            merged[section] = table
            ctx.aliases[f"{section}.{key}"] = variable
    return merged
