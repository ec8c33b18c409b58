"""The cache-hit path's shortcuts give what the general rules give: the token of the header's
usual `Bearer ` spelling, and the count of valid tokens kept as a plain integer until flushed."""

from __future__ import annotations

import pytest

from edgeauth.errors import InvalidRequest
from edgeauth.metrics import VALIDATIONS, Recorder
from edgeauth.oauth import bearer


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("Bearer  abc ", "abc"),
        ("Bearer abc def", "abc def"),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("token abc", "abc"),
        (" Bearer abc", "abc"),
        ("Bearer\tabc", None),
        ("Bearerabc", None),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
    ],
)
def test_the_header_token_is_as_the_rule_says(value: str, token: str | None) -> None:
    assert bearer.from_header([value]) == token


def test_no_header_is_no_token_and_two_are_refused() -> None:
    assert bearer.from_header(()) is None
    with pytest.raises(InvalidRequest):
        bearer.from_header(["Bearer a", "Bearer a"])


def _valid() -> float:
    value: float = VALIDATIONS.labels("valid")._value.get()
    return value


def test_valid_tokens_reach_the_validations_family_at_flush() -> None:
    recorder = Recorder(enabled=True, per_consumer=False)
    before = _valid()
    recorder.valid_tokens += 3
    assert _valid() == before  # tallied, not yet moved
    recorder.flush()
    assert _valid() == before + 3
    assert recorder.valid_tokens == 0
    recorder.flush()
    assert _valid() == before + 3  # moved once


def test_a_disabled_recorder_reports_no_valid_tokens() -> None:
    recorder = Recorder(enabled=False, per_consumer=False)
    before = _valid()
    recorder.valid_tokens += 2
    recorder.flush()
    assert _valid() == before
    assert recorder.valid_tokens == 0
