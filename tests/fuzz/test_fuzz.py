"""The differential fuzzer (issue 12): request and upstream-answer byte streams through one
real gateway over TLS to a recording upstream, every example judged by the four properties
of tests/fuzz/oracle.py.

A bounded, derandomized run is part of `make test`. `make fuzz` (python -m tests.fuzz) runs
long with FUZZ_EXAMPLES / FUZZ_SECONDS; what a run ever found is kept in regressions.py."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz import corpus, regressions
from tests.fuzz.answers import KINDS
from tests.fuzz.harness import Harness
from tests.fuzz.model import Conversation, Example, Unit
from tests.fuzz.strategies import examples

LONG = bool(os.environ.get("FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
SECONDS = float(os.environ.get("FUZZ_SECONDS") or 0)
RSS_GROWTH_LIMIT = 64 * 1024 * 1024
_deadline: list[float] = []


def _settings(bounded: int) -> settings:
    return settings(
        max_examples=EXAMPLES or bounded,
        deadline=None,
        derandomize=not LONG,  # `make test` runs the same examples every time
        database=DirectoryBasedExampleDatabase(".pytest_cache/fuzz-examples") if LONG else None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        print_blob=LONG,
    )


def _out_of_time() -> bool:
    """In a long run, examples after FUZZ_SECONDS are skipped (they cost nothing)."""
    if not SECONDS:
        return False
    if not _deadline:
        _deadline.append(time.monotonic() + SECONDS)
    return time.monotonic() > _deadline[0]


def _judge(harness: Harness, example: Example) -> None:
    failures = harness.run(example)
    assert not failures, "\n".join(failures) + "\n\nexample:\n" + example.describe()


@_settings(bounded=128)
@given(example=examples())
def test_request_streams(harness: Harness, example: Example) -> None:
    if _out_of_time():
        return
    _judge(harness, example)


@st.composite
def answer_examples(draw: st.DrawFn) -> Example:
    """Plain requests, each answered by a scripted (often broken) upstream stream."""
    convs = []
    n = 1
    for _ in range(draw(st.integers(1, 2))):
        units = []
        for _ in range(draw(st.integers(1, 3))):
            method = draw(st.sampled_from(["GET", "HEAD", "POST"]))
            marker = f"m{n}x"
            n += 1
            body = b"Content-Length: 5\r\n\r\nhello" if method == "POST" else b"\r\n"
            raw = f"{method} /app/{marker} HTTP/1.1\r\nHost: fuzz.example\r\n".encode() + body
            kind = draw(st.sampled_from(sorted(KINDS)))
            units.append(
                Unit(
                    marker,
                    method,
                    raw,
                    False,
                    False,
                    answer=kind,
                    early=draw(st.booleans()),
                    note=kind,
                )
            )
        convs.append(Conversation(tuple(units), pipelined=draw(st.booleans())))
    return Example(tuple(convs))


@_settings(bounded=80)
@given(example=answer_examples())
def test_upstream_answers(harness: Harness, example: Example) -> None:
    if _out_of_time():
        return
    _judge(harness, example)


@pytest.mark.parametrize("case", corpus.CASES + corpus.ANSWER_CASES, ids=lambda c: c[0])
def test_smuggling_corpus(harness: Harness, case: tuple[str, Example]) -> None:
    _judge(harness, case[1])


@pytest.mark.parametrize("case", regressions.CASES, ids=lambda c: c[0])
def test_regression(harness: Harness, case: tuple[str, Example]) -> None:
    _judge(harness, case[1])


def test_workers_survived_and_rss_stayed_bounded(harness: Harness) -> None:
    """(d), at the end of the module's run: the same workers, and their memory bounded."""
    assert harness.check_workers() == []
    grown = harness.rss() - harness.rss_start
    assert grown < RSS_GROWTH_LIMIT, f"worker RSS grew by {grown / 2**20:.1f} MiB over the run"
