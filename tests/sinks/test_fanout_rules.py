"""The fanout sinks' rules on the real stores: folds held back by the rate limit or a
mute come in later, exactly once; inexact recent-liker lists come from the edge store.

Every test writes fresh ids straight into the edge store tables (no outbox row, so no
event reaches the running flows) and removes them afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis

from core.records import NotificationUpdate, RecentLikers
from core.settings import CommonSettings
from schemas.redis_keys import recent_key, recent_seq_key
from sinks.postgres_notifications import PostgresNotificationSink
from sinks.redis_recent import RedisRecentSink
from tests.conftest import fresh_id
from tests.sinks.cases import T0

pytestmark = pytest.mark.integration


def _pg(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture()
def post(stack: CommonSettings) -> Iterator[tuple[int, int]]:
    """A fresh post ``(post_id, author_id)`` in ``posts``, removed with all it gained."""
    post_id, author = fresh_id(), fresh_id()
    url = stack.postgres_url
    _pg(url, "INSERT INTO posts (post_id, author_id) VALUES (%s, %s)", (post_id, author))
    yield post_id, author
    _pg(url, "DELETE FROM notifications WHERE recipient_id = %s", (author,))
    _pg(url, "DELETE FROM notification_actors WHERE recipient_id = %s", (author,))
    _pg(url, "DELETE FROM post_mutes WHERE post_id = %s", (post_id,))
    _pg(url, "DELETE FROM post_likes WHERE post_id = %s", (post_id,))
    _pg(url, "DELETE FROM posts WHERE post_id = %s", (post_id,))


def test_held_and_muted_actors_are_folded_in_later_once(
    stack: CommonSettings, post: tuple[int, int]
) -> None:
    post_id, author = post
    url = stack.postgres_url
    part = PostgresNotificationSink(url).build("rules", 0, 1)

    def row() -> list[tuple[Any, ...]]:
        return _pg(
            url,
            "SELECT actor_ids, total_actors, updates FROM notifications WHERE recipient_id = %s",
            (author,),
        )

    batches = [
        [NotificationUpdate(author, post_id, ((11, T0),), True)],
        [NotificationUpdate(author, post_id, ((12, T0 + 1),), False)],  # rate limit: held
    ]
    for b in batches:
        part.write_batch(b)
    assert row() == [([11], 1, 1)], "12 is recorded but not yet in the aggregate"
    _pg(url, "INSERT INTO post_mutes (post_id) VALUES (%s)", (post_id,))
    muted = [NotificationUpdate(author, post_id, ((13, T0 + 2),), True)]
    part.write_batch(muted)
    assert row() == [([11], 1, 1)], "a muted post's notification does not change"
    ledger = "SELECT count(*) FROM notification_actors WHERE recipient_id = %s"
    assert _pg(url, ledger, (author,)) == [(3,)], "the ledger keeps every actor"
    _pg(url, "DELETE FROM post_mutes WHERE post_id = %s", (post_id,))
    fold = [NotificationUpdate(author, post_id, (), True)]
    part.write_batch(fold)
    assert row() == [([13, 12, 11], 3, 2)], "after the mute, one update brings it up to date"
    for b in [*batches, muted, fold, fold]:
        part.write_batch(b)
    assert row() == [([13, 12, 11], 3, 2)], "replays and extra folds change nothing"
    part.close()


def test_inexact_lists_are_read_from_the_edge_store(
    stack: CommonSettings, post: tuple[int, int]
) -> None:
    post_id, _ = post
    at = datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
    edges = [  # user, state, updated_at offset (ms), version
        (1, "liked", 1, 1),
        (2, "liked", 5, 3),
        (3, "unliked", 9, 2),
        (4, "liked", 5, 1),  # same time as 2: the higher version is newer
        (5, "liked", 7, 1),
    ]
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        for user, state, ms, version in edges:
            ts = at + timedelta(milliseconds=ms)
            conn.execute(
                "INSERT INTO post_likes (post_id, user_id, state, created_at, updated_at, version)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (post_id, user, state, ts, ts, version),
            )
    r = redis.Redis.from_url(stack.redis_url)
    keys = (recent_key(post_id), recent_seq_key(post_id))
    part = RedisRecentSink(stack.redis_url, stack.postgres_url, size=3).build("rules", 0, 1)
    try:
        part.write_batch([RecentLikers(post_id, (9,), 4, False)])  # the flow's list is ignored
        assert r.lrange(keys[0], 0, -1) == [b"5", b"2", b"4"] and r.get(keys[1]) == b"4"
        part.write_batch([RecentLikers(post_id, (8, 7), 6, True)])
        assert r.lrange(keys[0], 0, -1) == [b"8", b"7"]
        part.write_batch([RecentLikers(post_id, (), 5, False)])  # older: no read wins
        assert r.lrange(keys[0], 0, -1) == [b"8", b"7"] and r.get(keys[1]) == b"6"
        # an adoption lowers an inflated seq: forced, so written, and the flow goes on
        part.write_batch([RecentLikers(post_id, (6,), 2, True, forced=True)])
        assert r.lrange(keys[0], 0, -1) == [b"6"] and r.get(keys[1]) == b"2"
        part.write_batch([RecentLikers(post_id, (7,), 3, True)])
        assert r.lrange(keys[0], 0, -1) == [b"7"] and r.get(keys[1]) == b"3"
        # in one batch, the last list is written, forced if any before it was
        part.write_batch(
            [RecentLikers(post_id, (1,), 1, True, forced=True), RecentLikers(post_id, (), 2, False)]
        )
        assert r.lrange(keys[0], 0, -1) == [b"5", b"2", b"4"] and r.get(keys[1]) == b"2"
    finally:
        part.close()
        r.delete(*keys)


def test_an_erased_user_never_enters_the_ledger(
    stack: CommonSettings, post: tuple[int, int]
) -> None:
    """After an erasure, a replayed like of the user (as actor, or as the recipient's
    post) records nothing; other actors are counted as usual."""
    post_id, author = post
    url = stack.postgres_url
    erased, fan = fresh_id(), fresh_id()
    _pg(url, "INSERT INTO erased_users (user_id) VALUES (%s)", (erased,))
    try:
        part = PostgresNotificationSink(url).build("rules", 0, 1)
        part.write_batch([NotificationUpdate(author, post_id, ((erased, T0), (fan, T0 + 1)), True)])
        ledger = "SELECT actor_id FROM notification_actors WHERE recipient_id = %s"
        assert _pg(url, ledger, (author,)) == [(fan,)]
        note = "SELECT actor_ids, total_actors FROM notifications WHERE recipient_id = %s"
        assert _pg(url, note, (author,)) == [([fan], 1)]
        part.write_batch([NotificationUpdate(erased, post_id, ((fan, T0 + 2),), True)])
        assert _pg(url, ledger, (erased,)) == [], "nor as the recipient"
        part.close()
    finally:
        _pg(url, "DELETE FROM erased_users WHERE user_id = %s", (erased,))
