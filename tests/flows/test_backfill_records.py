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
import pytest

from core.kafka_partition import edge_key, key_hash, partition_for
from core.settings import CommonSettings
from flows.backfill_chunks import ChunkQuery, ChunkReader, FlowStateRecords
from schemas.events import FlowStateRecord
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration  # needs the stack

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


def _insert(conn: psycopg.Connection, edges: list[tuple[int, int, bool, int]], age_s: int) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at, version) "
            "VALUES (%s, %s, %s, now() - make_interval(secs => %s), "
            "now() - make_interval(secs => %s), %s)",
            [(p, u, "liked" if liked else "unliked", age_s, age_s, v) for p, u, liked, v in edges],
        )


def _read(
    conn: psycopg.Connection, records: FlowStateRecords, posts: list[int], **q: Any
) -> tuple[list[Any], dict[int, dict[int, list[int]]]]:
    """One chunk's rows and the records it published, ``{partition: {post: [n, v]}}``."""
    params = {"after": posts[0] - 1, "last": posts[-1], "since": None, "chunk": 1000, **q}
    rows = records.read(conn, params)
    published: list[Any] = conn.execute(
        "SELECT edge_key, post_id, user_id, action, event_id, payload FROM like_outbox "
        "WHERE action = 'FlowState' AND post_id = ANY(%s)",
        (posts,),
    ).fetchall()
    conn.execute(  # so the next read in this transaction shows only its own
        "DELETE FROM like_outbox WHERE action = 'FlowState' AND post_id = ANY(%s)", (posts,)
    )
    got: dict[int, dict[int, list[int]]] = {}
    for key, post, user, action, event_id, payload in published:
        rec = FlowStateRecord.model_validate_json(json.dumps(payload))
        assert (rec.action, rec.event_id, rec.partitions) == (action, event_id, PARTITIONS)
        assert key == f"{post}:{user}" and partition_for(key.encode(), PARTITIONS) == rec.partition
        assert [p for p, _, _ in rec.posts] == sorted(p for p, _, _ in rec.posts)
        assert rec.partition not in got, "one record per partition"
        got[rec.partition] = {p: [n, v] for p, n, v in rec.posts}
    return rows, got


def test_a_chunk_publishes_each_partitions_truth_keyed_into_that_partition(
    stack: CommonSettings,
) -> None:
    """The chunk's counts and its records come from one snapshot: the records hold, per
    partition, each post's liked edges and sum of versions there (against a model in
    Python), keyed by one of their own edges; chunks and ``since`` bound both alike."""
    rng = random.Random(5)
    base = fresh_id()
    posts = list(range(base, base + 40))  # a dense id range: no other test's posts inside
    edges, old = [], []
    for i, post in enumerate(posts):
        for _ in range(1 if i % 4 == 0 else rng.randint(2, 60)):  # small and larger posts
            version = rng.randint(1, 5)
            edge = (post, fresh_id(), version % 2 == 1, version)
            (old if i % 3 == 0 else edges).append(edge)
    records = FlowStateRecords(PARTITIONS)
    with psycopg.connect(stack.postgres_url) as conn:  # one transaction, rolled back
        _insert(conn, edges, 0)
        _insert(conn, old, 7200)
        rows, got = _read(conn, records, posts)
        assert got == _model(edges + old)
        every = edges + old
        assert [tuple(r[:4]) for r in rows] == [
            (
                p,
                sum(liked for q, _, liked, _ in every if q == p),
                sum(v for q, _, _, v in every if q == p),
                sum(1 for q, _, _, _ in every if q == p),
            )
            for p in posts
        ]
        first_ten, got = _read(conn, records, posts, chunk=10)
        assert [r[0] for r in first_ten] == posts[:10]
        assert got == _model([e for e in every if e[0] in posts[:10]])
        since = conn.execute("SELECT now() - interval '1 hour'").fetchone()
        recent, got = _read(conn, records, posts, since=since[0] if since else None)
        changed = sorted({e[0] for e in edges})
        assert [r[0] for r in recent] == changed
        assert got == _model([e for e in every if e[0] in changed])
        conn.rollback()
    ten, recent_model = (
        [e for e in every if e[0] in posts[:10]],
        [e for e in every if e[0] in changed],
    )
    assert records.tally.written == len(_model(every)) + len(_model(ten)) + len(
        _model(recent_model)
    )


def test_a_chunk_read_survives_its_connection_being_killed(
    stack: CommonSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A lost connection is retried on a new one (the sinks' retry policy), not fatal,
    and the retry is logged."""
    reader = ChunkReader(stack.postgres_url)
    try:
        q = ChunkQuery(after=0, last=2**63 - 1, chunk=5)
        first = reader.read(q)
        pid = reader.backend_pid()
        with psycopg.connect(stack.postgres_url, autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert killed == (True,)
        again = reader.read(q)  # raises without the retry: the connection is gone
        assert len(again) == len(first) == 5
        assert reader.backend_pid() not in (None, pid)
        assert any(r.getMessage().startswith("backfill_chunk_reads: ") for r in caplog.records)
    finally:
        reader.close()
