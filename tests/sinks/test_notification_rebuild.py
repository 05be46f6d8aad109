"""The backfill's notification rebuild (``sinks.postgres_notifications``) on a popular
post: exact, and its work grows with the post's edges, not with their square.

The ledger statement once found the rows to drop with an anti-join against the wanted
rows, which Postgres planned as a nested loop over both (153 s for 50 posts of 43,000
edges): a rebuild of a post with a million likes would never have finished. Rather than
timing it, the test counts the rows the plan visits while dropping (``EXPLAIN ANALYZE``:
rows times loops of every node under the delete) with the planner held to nested loops,
as it chose in production from a one-row estimate, which is deterministic.

Runs on the stack's Postgres inside one transaction that is rolled back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from core.settings import CommonSettings
from sinks.postgres_notifications import _REBUILD_LEDGER_SQL
from tests.conftest import fresh_id

pytestmark = pytest.mark.integration  # needs the stack

EDGES = 3_000
STALE = 200  # ledger rows whose actor has no edge on the post
ROWS_PER_EDGE = 10  # what dropping may visit per ledger row: a few index lookups


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` and every plan node below it, depth first."""
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


def _visited(node: dict[str, Any]) -> int:
    return sum(int(n.get("Actual Rows", 0)) * int(n.get("Actual Loops", 1)) for n in _nodes(node))


def _delete_of(node: dict[str, Any], table: str) -> dict[str, Any] | None:
    return next(
        (
            n
            for n in _nodes(node)
            if n.get("Operation") == "Delete" and n.get("Relation Name") == table
        ),
        None,
    )


def test_a_popular_posts_ledger_is_rebuilt_exactly_in_linear_work(stack: CommonSettings) -> None:
    post, author = fresh_id(), fresh_id()
    actors = [fresh_id() for _ in range(EDGES)]
    stale = [fresh_id() for _ in range(STALE)]
    now = datetime.now(UTC)
    with psycopg.connect(stack.postgres_url) as conn:
        conn.execute("INSERT INTO posts (post_id, author_id) VALUES (%s, %s)", (post, author))
        conn.execute(
            "INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at, version) "
            "SELECT %s, u, 'liked', %s, %s, 1 FROM unnest(%s::bigint[]) AS u",
            (post, now, now, [*actors, author]),  # the author's self-like never notifies
        )
        conn.execute(
            "INSERT INTO notification_actors (recipient_id, post_id, actor_id, liked_at) "
            "SELECT r, %s, a, %s FROM unnest(%s::bigint[], %s::bigint[]) AS t(r, a)",
            (
                post,
                now,
                [author] * (EDGES // 2 + STALE) + [fresh_id()],
                actors[: EDGES // 2] + stale + [actors[-1]],  # the last: a wrong recipient
            ),
        )
        # Production got the nested loop from a one-row estimate of the wanted rows; with
        # hash and merge joins off every plan is in that situation, whatever the estimates.
        conn.execute("SET LOCAL enable_hashjoin = off")
        conn.execute("SET LOCAL enable_mergejoin = off")
        plan = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _REBUILD_LEDGER_SQL, {"posts": [post]}
        ).fetchone()
        assert plan is not None
        ledger = conn.execute(
            "SELECT recipient_id, actor_id FROM notification_actors WHERE post_id = %s", (post,)
        ).fetchall()
        conn.rollback()
    assert sorted(ledger) == sorted((author, a) for a in actors)
    delete = _delete_of(plan[0][0]["Plan"], "notification_actors")
    assert delete is not None, "the statement no longer drops ledger rows"
    visited = _visited(delete)
    assert visited <= ROWS_PER_EDGE * EDGES, f"{visited:,} rows visited to drop from {EDGES:,}"
    # The edge lookup stays a per-row subplan. Pulled up into an anti-join, it was
    # planned on the working stack's 357,000 edges as a loop over all of them per ledger
    # row (over 20 minutes for 50 posts), a plan this small table does not provoke.
    subplans = [n for n in _nodes(delete) if n.get("Parent Relationship") == "SubPlan"]
    lookups = [n for s in subplans for n in _nodes(s) if n.get("Relation Name") == "post_likes"]
    assert lookups, "the edge lookup was pulled up into a join"
    assert all("Index" in n["Node Type"] for n in lookups), [n["Node Type"] for n in lookups]
