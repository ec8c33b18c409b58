"""The scenarios, in the order `python -m benchmarks` runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.results import ScenarioResult
from benchmarks.runner import Bench
from benchmarks.scenarios import (
    accesslog,
    idle,
    invalid,
    issue,
    overload,
    proxy,
    public,
    revoke,
    stream,
    stream_tcp,
    workers,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[Bench, ScenarioResult], None]


SCENARIOS: dict[str, Scenario] = {
    module.NAME: Scenario(module.NAME, module.DESCRIPTION, module.run)
    for module in (
        proxy,
        public,
        accesslog,
        issue,
        invalid,
        stream,
        revoke,
        idle,
        workers,
        overload,
        stream_tcp,
    )
}
