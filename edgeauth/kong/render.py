"""`[[services]]` tables → TOML text to append to config.toml, checked by edgeauth's own
config loader before anyone sees it. Pure.

Written by hand rather than by a TOML library, so that each service says where in Kong it
came from and the layout matches config.toml's.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeauth.config import parse_settings
from edgeauth.errors import ConfigError

_SOURCE = "kong-import.toml"
HEADER = """\
# Services from Kong, written by `edgeauth import kong`: append them to config.toml.
# They hold the provision keys of Kong's oauth2 plugins in clear: keep this file private
# (or move each key to a provision_key_file).
"""


def render(tables: Sequence[dict[str, Any]], sources: Sequence[str]) -> str:
    parts = [HEADER]
    for table, source in zip(tables, sources, strict=True):
        parts.append(f"\n# {source}\n[[services]]\n")
        parts.extend(_pairs(table, ""))
        for route in table["routes"]:
            parts.append("\n  [[services.routes]]\n")
            parts.extend(_pairs(route, "  "))
        if "oauth2" in table:
            parts.append("\n  [services.oauth2]\n")
            parts.extend(_pairs(table["oauth2"], "  "))
    return "".join(parts)


def problems(text: str) -> list[str]:
    """What edgeauth's config loader finds wrong with `text` (nothing, normally)."""
    try:
        data = tomllib.loads(text)
        parse_settings({"services": data.get("services", [])}, source=Path(_SOURCE))
    except tomllib.TOMLDecodeError as exc:  # a bug of render(), never the input's
        return [f"{_SOURCE}: TOML syntax error: {exc}"]
    except ConfigError as exc:  # only the services' problems: the rest is defaults
        return [p for p in exc.problems if p.startswith(f"{_SOURCE}: services")]
    return []


def _pairs(table: dict[str, Any], indent: str) -> list[str]:
    return [
        f"{indent}{key} = {_value(value)}\n"
        for key, value in table.items()
        if not isinstance(value, dict) and key != "routes"
    ]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return "[" + ", ".join(_value(item) for item in value) + "]"
