"""The backfill's flow-state records, grouped by partition inside Postgres (migration 009's
``post_likes.key_hash``), against a model in Python: every post's truth per partition of
its edges' events, each record keyed by an edge of its own partition.

Runs on the stack's Postgres inside one transaction that is rolled back: the edges and
the records never reach the outbox's readers."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import httpx
import psycopg

from core.kafka_partition import edge_key, key_hash, partition_for
from core.records import CountUpdate
from core.settings import CommonSettings
from schemas.events import FlowStateRecord
from sinks.outbox_flow_state import FlowStateSink
from tests.conftest import auth, fresh_id, register_post

PARTITIONS = 12
_EXTREMES = [(1, 1), (2**63 - 1, 2**63 - 1), (9, 10**17), (123456789, 7)]


def test_key_hash_in_postgres_is_the_partitioners(stack: CommonSettings) -> None:
    """The SQL function equals the Java client's hash for ids of every length, and an
    edge inserted without ``key_hash`` gets it from the trigger."""
    rng = random.Random(9)
    pairs = _EXTREMES + [
        (rng.randrange(1, 10 ** rng.randint(1, 19)), rng.randrange(1, 10 ** rng.randint(1, 19)))
        for _ in range(3000)
    ]
    pairs = [(p, u) for p, u in pairs if p < 2**63 and u < 2**63]
    with psycopg.connect(stack.postgres_url) as conn:
        got = conn.execute(
            "SELECT likes_edge_key_hash(p, u) FROM unnest(%s::bigint[], %s::bigint[]) AS t(p, u)",
            ([p for p, _ in pairs], [u for _, u in pairs]),
        ).fetchall()
        assert [g for (g,) in got] == [key_hash(p, u) for p, u in pairs]
        post, user = fresh_id(), fresh_id()
        filled = conn.execute(
            "INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at, version) "
            "VALUES (%s, %s, 'liked', now(), now(), 1) RETURNING key_hash",
            (post, user),
        ).fetchone()
        conn.rollback()
    assert filled == (key_hash(post, user),)


def test_the_api_stores_each_new_edges_key_hash(stack: CommonSettings, api: httpx.Client) -> None:
    post = register_post(api, stack)
    users = [fresh_id() for _ in range(5)]
    for user in users:
        r = api.post(f"/v1/posts/{post}/like", headers=auth(stack, user))
        assert r.status_code == 200, r.text
    with psycopg.connect(stack.postgres_url) as conn:
        rows = conn.execute(
            "SELECT user_id, key_hash FROM post_likes WHERE post_id = %s", (post,)
        ).fetchall()
    assert sorted(rows) == sorted((u, key_hash(post, u)) for u in users)


def _model(edges: list[tuple[int, int, bool, int]]) -> dict[int, dict[int, list[int]]]:
    """``{partition: {post: [liked edges, sum of versions]}}`` over the edges' events."""
    out: dict[int, dict[int, list[int]]] = defaultdict(dict)
    for post, user, liked, version in edges:
        cell = out[partition_for(edge_key(post, user), PARTITIONS)].setdefault(post, [0, 0])
        cell[0] += liked
        cell[1] += version
    return out


def test_records_hold_each_partitions_truth_keyed_into_that_partition(
    stack: CommonSettings,
) -> None:
    rng = random.Random(5)
    posts = sorted(fresh_id() for _ in range(40))
    edges = []
    for i, post in enumerate(posts):
        for _ in range(1 if i % 4 == 0 else rng.randint(2, 60)):  # small and larger posts
            version = rng.randint(1, 5)
            edges.append((post, fresh_id(), version % 2 == 1, version))
    sink = FlowStateSink(stack.postgres_url, PARTITIONS)
    with psycopg.connect(stack.postgres_url) as conn:  # one transaction, rolled back
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at, "
                "version) VALUES (%s, %s, %s, now(), now(), %s)",
                [(p, u, "liked" if liked else "unliked", v) for p, u, liked, v in edges],
            )
        sink.write(conn, [CountUpdate(p, 0, 0) for p in posts + posts[:3]])  # repeats: once
        rows: list[Any] = conn.execute(
            "SELECT edge_key, post_id, user_id, action, event_id, payload FROM like_outbox "
            "WHERE action = 'FlowState' AND post_id = ANY(%s)",
            (posts,),
        ).fetchall()
        conn.rollback()
    expected = _model(edges)
    assert sink.tally.written == len(rows) == len(expected)
    got: dict[int, dict[int, list[int]]] = {}
    for key, post, user, action, event_id, payload in rows:
        rec = FlowStateRecord.model_validate_json(json.dumps(payload))
        assert (rec.action, rec.event_id, rec.partitions) == (action, event_id, PARTITIONS)
        assert key == f"{post}:{user}" and partition_for(key.encode(), PARTITIONS) == rec.partition
        assert (post, user) in {(p, u) for p, u, _, _ in edges}, "keyed by one of its edges"
        assert [p for p, _, _ in rec.posts] == sorted(p for p, _, _ in rec.posts)
        got[rec.partition] = {p: [n, v] for p, n, v in rec.posts}
    assert got == expected
