"""The backfill plan cuts the post range into partitions with no gap and no overlap."""

from __future__ import annotations

import itertools

import pytest

from flows.backfill import BackfillPlan


@pytest.mark.parametrize(
    ("first", "last", "parts"), [(1, 1, 4), (1, 10, 4), (5, 1_000_003, 7), (10**12, 2**62, 4)]
)
def test_ranges_cover_every_post_once(first: int, last: int, parts: int) -> None:
    ranges = sorted(BackfillPlan(first=first, last=last, partitions=parts).ranges().values())
    assert 1 <= len(ranges) <= parts
    assert ranges[0][0] == first - 1 and ranges[-1][1] == last
    for (_, end), (after, _) in itertools.pairwise(ranges):
        assert end == after  # (after, last] intervals that touch
    assert all(after < end for after, end in ranges)
