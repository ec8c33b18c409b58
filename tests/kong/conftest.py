"""Running `edgeauth import kong` as a real process, and reading what it prints."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def summary(self) -> dict[str, Any]:
        result = json.loads(self.out)
        assert isinstance(result, dict)
        return result


async def edgeauth_import(config: Path, *args: str) -> Run:
    """`edgeauth import kong -c config ARGS...` in a process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgeauth",
        "import",
        "kong",
        "-c",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def written_services(path: Path) -> list[dict[str, Any]]:
    services = tomllib.loads(path.read_text())["services"]
    assert isinstance(services, list)
    return services


def statuses(summary: dict[str, Any], kind: str) -> dict[str, int]:
    """The non-zero counts of one kind of entity in a summary."""
    return {key: n for key, n in summary[kind].items() if n and key != "skipped_why"}
