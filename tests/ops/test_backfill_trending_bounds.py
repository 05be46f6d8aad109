"""The trending rebuild's bounds on an edge's like times (``ops.backfill_sinks.like_times``)."""

from __future__ import annotations

from ops.backfill_sinks import _Edge, like_times


def test_edges_liked_at_most_twice_are_exact() -> None:
    assert like_times(_Edge(1, True, 10, 10), {}) == ([10], [10])
    assert like_times(_Edge(2, False, 10, 20), {}) == ([10], [10])
    assert like_times(_Edge(3, True, 10, 30), {}) == ([10, 30], [10, 30])


def test_unknown_like_times_are_bounded_by_the_edge_and_the_outbox_fills_them() -> None:
    assert like_times(_Edge(4, False, 10, 40), {}) == ([10, 10], [10, 40])
    assert like_times(_Edge(5, True, 10, 50), {}) == ([10, 10, 50], [10, 50, 50])
    assert like_times(_Edge(5, True, 10, 50), {3: 33, 5: 50}) == ([10, 33, 50], [10, 33, 50])
