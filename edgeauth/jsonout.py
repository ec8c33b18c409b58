"""What the commands print as JSON: one writer for every command, so that their answers and
failures read alike.

Rule 1: a failure with `--json` is `error_line()`: one object `{"error": message, ...}` on one
line (cli.py Rule 2); a warning is `{"warning": message}` the same way.
Rule 2: text as it is (ensure_ascii=False: a path or a name in any script stays readable);
JSON escapes the control characters, so a message never breaks the line.
"""

from __future__ import annotations

import json
from typing import Any


def json_line(value: Any) -> str:
    """`value` as one line of JSON, newline included."""
    return json.dumps(value, ensure_ascii=False) + "\n"


def error_line(message: str, **detail: Any) -> str:
    """The failure every command prints on stderr with --json."""
    return json_line({"error": message, **detail})


def document(value: Any) -> str:
    """An answer printed on stdout with --json: indented for people, newline included."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
