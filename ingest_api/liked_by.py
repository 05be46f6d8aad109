"""``liked_by``: up to 3 people the viewer follows who currently like a post, newest first.

The exact answer for post P and viewer V is the top 3 by ``updated_at`` of P's current
likers that V follows. There are two index paths to it, each exact:

- **scan**: walk P's edges newest first (``post_likes_post_recent_idx``), keep the likers
  V follows, stop at the third. "V follows" is a lookup in a hash of V's followees built
  once per statement, or, for a V who follows more than B (below), a probe of the
  ``follows`` primary key. Costs at most P's edges, about L (its like count).
- **probe**: look each of V's F followees up in the ``post_likes`` primary key
  ``(post_id, user_id)`` (one index scan over the sorted array of them), then sort the
  few hits. Costs F btree descents, whatever L is.

Exact costs min(L, F) per post, which is unbounded: a feed batch of 100 posts that each
have a million likers, read by someone who follows 5,000 people, is 500,000 probes. So
every read gets a budget B of index entries (``ApiSettings.liked_by_budget``):

1. F is counted, at most B + 1 of it (one index range scan of ``follows``).
2. Each post needs ``min(S, F)`` entries for an exact answer, where ``S`` = L + 25% (for
   unliked edges) + 16 (for counts lagging behind) is what a scan of all its edges
   takes; L comes from the count projection the read has just fetched.
3. :func:`plan` splits B over the posts by water-filling: smallest needs first, each
   gets its need or an equal share of what is left, whichever is smaller. A post whose
   need fits is answered exactly (probe when F ≤ S, else a scan of S edges); one that
   does not fit is scanned over its k newest edges, k being its share.

The bound: one read walks at most B + 1 ``follows`` entries to count F and at most
B + 1 more to build the hash or the probe array, then at most B units over all its
posts, a unit being one index entry walked or one btree descent (plus at most one heap
fetch and one hash lookup or primary-key probe), plus one descent per post: O(B +
posts), independent of L and F. ``bench/liked_by.py`` measures it at L = 10^6 and
F = 5,000: with B = 10,000, about 10 ms of Postgres CPU for the viral post alone (5,000
descents, exact) and 8-15 ms for a batch of 100.

What a short budget costs: the scan over a post's k newest edges finds every followee
who liked it more recently than the k-th edge, in order. So ``liked_by`` is always a
prefix of the exact answer (never a wrong id, never out of order); it is shorter only
for a post whose k newest edges hold fewer than 3 of V's followees while older ones
hold more. A single post with min(S, F) ≤ B, or a feed whose posts together need at
most B, is exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

from ingest_api.metrics import LIKED_BY_POSTS

SHOWN = 3
SCAN_SLACK = 16
UNLIKED_SHARE = 0.25

_FOLLOWEES_SQL = "SELECT count(*) FROM (SELECT FROM follows WHERE follower_id = %s LIMIT %s) f"

# The probe arm looks the followees up in the post_likes primary key with one index
# scan over an array (an InitPlan, built once per statement). The scan arm walks each
# post's newest edges (the LIMIT bounds the walk; the planner cannot trade it for a scan
# of all likers) and stops at the third hit. Whether an edge's liker is followed is a
# lookup in a hash of the viewer's followees, built once per statement (the IS TRUE
# keeps the IN a hashed SubPlan instead of a join the planner could reorder), or, when
# the viewer follows more than the count reached, one probe of the follows primary key.
_PROBE_ARM = """SELECT p.post_id, hit.user_id, hit.updated_at
FROM unnest(%(probe_posts)s::bigint[]) AS p(post_id)
CROSS JOIN LATERAL (
    SELECT l.user_id, l.updated_at FROM post_likes l
    WHERE l.post_id = p.post_id AND l.state = 'liked' AND l.user_id = ANY(ARRAY(
        SELECT followee_id FROM follows WHERE follower_id = %(viewer)s LIMIT %(cap)s))
    ORDER BY l.updated_at DESC, l.user_id DESC
    LIMIT 3
) hit"""
_SCAN_ARM = """SELECT p.post_id, hit.user_id, hit.updated_at
FROM unnest(%(scan_posts)s::bigint[], %(scan_rows)s::int[]) AS p(post_id, n)
CROSS JOIN LATERAL (
    SELECT r.user_id, r.updated_at
    FROM (
        SELECT l.user_id, l.updated_at, l.state FROM post_likes l
        WHERE l.post_id = p.post_id
        ORDER BY l.updated_at DESC
        LIMIT p.n
    ) r{followed}
    ORDER BY r.updated_at DESC
    LIMIT 3
) hit"""
_IN_HASH = """
    WHERE r.state = 'liked' AND (r.user_id IN (
        SELECT followee_id FROM follows WHERE follower_id = %(viewer)s LIMIT %(cap)s)) IS TRUE"""
_BY_PROBE = """
    CROSS JOIN LATERAL (
        SELECT FROM follows f
        WHERE f.follower_id = %(viewer)s AND f.followee_id = r.user_id
        OFFSET 0
    ) followed
    WHERE r.state = 'liked'"""
_SQL_HASHED = f"{_PROBE_ARM}\nUNION ALL\n{_SCAN_ARM.format(followed=_IN_HASH)}"
_SQL_PROBED = f"{_PROBE_ARM}\nUNION ALL\n{_SCAN_ARM.format(followed=_BY_PROBE)}"


@dataclass(frozen=True)
class Step:
    """How one post is read: ``rows`` followees probed, or its ``rows`` newest edges scanned."""

    probe: bool
    rows: int
    exact: bool


def scan_need(likes: int) -> int:
    """Index entries a scan of all of a post's edges is planned with."""
    return max(0, likes) + int(max(0, likes) * UNLIKED_SHARE) + SCAN_SLACK


def plan(likes: dict[int, int], followees: int, budget: int) -> dict[int, Step]:
    """Each post's :class:`Step`; the ``rows`` of all steps add up to at most ``budget``."""
    need = {p: min(scan_need(n), followees) for p, n in likes.items()}
    left, steps = budget, {}
    for i, p in enumerate(sorted(need, key=lambda q: (need[q], q))):
        rows = min(need[p], left // (len(need) - i))
        left -= rows
        exact = rows == need[p]
        steps[p] = Step(probe=exact and followees <= scan_need(likes[p]), rows=rows, exact=exact)
    return steps


def _observe(steps: Iterable[Step]) -> None:
    methods = Counter("probe" if s.probe else "scan" if s.exact else "prefix" for s in steps)
    for method, n in methods.items():
        LIKED_BY_POSTS.labels(method).inc(n)


async def count_followees(conn: AsyncConnection, viewer: int, cap: int) -> int:
    """How many users ``viewer`` follows, counting no further than ``cap``."""
    row = await (await conn.execute(_FOLLOWEES_SQL, (viewer, cap))).fetchone()
    return int(row[0]) if row else 0


async def liked_by(
    conn: AsyncConnection, viewer: int, likes: dict[int, int], budget: int
) -> dict[int, list[int]]:
    """``liked_by`` of each post in ``likes`` (post id -> its like count) for ``viewer``."""
    out: dict[int, list[int]] = {p: [] for p in likes}
    followees = await count_followees(conn, viewer, budget + 1) if budget > 0 else 0
    if not followees or not likes:
        return out
    planned = plan(likes, followees, budget)
    _observe(planned.values())
    steps = {p: s for p, s in planned.items() if s.rows > 0}
    if not steps:
        return out
    scan = {p: s.rows for p, s in steps.items() if not s.probe}
    params = {
        "viewer": viewer,
        "cap": budget + 1,
        "probe_posts": [p for p, s in steps.items() if s.probe],
        "scan_posts": list(scan),
        "scan_rows": list(scan.values()),
    }
    sql = _SQL_HASHED if followees <= budget else _SQL_PROBED
    hits: dict[int, list[tuple[datetime, int]]] = {}
    for post_id, user_id, updated_at in await (await conn.execute(sql, params)).fetchall():
        hits.setdefault(int(post_id), []).append((updated_at, int(user_id)))
    for p, found in hits.items():
        out[p] = [u for _, u in sorted(found, reverse=True)[:SHOWN]]
    return out
