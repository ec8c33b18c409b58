"""Token and family ids are time-ordered UUIDs (oauth/issuer.py): valid, unique, and sorting
in the order they were made, so that the store's indexes on them grow at one end."""

from __future__ import annotations

import uuid

from edgeauth.oauth.issuer import time_ordered_id


def test_ids_are_version_7_uuids_in_their_canonical_form() -> None:
    for made in (time_ordered_id(1_765_000_000.0) for _ in range(500)):
        parsed = uuid.UUID(made)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == made


def test_ids_carry_the_milliseconds_of_their_time_and_sort_by_it() -> None:
    times = [1_765_000_000.0 + step * 0.001 for step in range(0, 5000, 7)]
    made = [time_ordered_id(at) for at in times]
    assert made == sorted(made)
    assert [uuid.UUID(i).int >> 80 for i in made] == [int(at * 1000) for at in times]


def test_ids_made_in_the_same_millisecond_differ() -> None:
    assert len({time_ordered_id(1_765_000_000.0) for _ in range(10_000)}) == 10_000


def test_a_time_outside_48_bits_of_milliseconds_is_clamped() -> None:
    assert uuid.UUID(time_ordered_id(-5.0)).int >> 80 == 0
    assert uuid.UUID(time_ordered_id(1e20)).int >> 80 == (1 << 48) - 1
