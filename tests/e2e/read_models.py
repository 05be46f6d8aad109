"""The read models as the end-to-end tests see them: recent likers in the edge store and
in Redis, notifications, and likes sent through the API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg
import redis

from core.settings import CommonSettings
from ingest_api.auth import issue_token
from schemas.redis_keys import recent_key
from tests.conftest import auth, fresh_id

NEWEST_SQL = """
SELECT post_id, user_id FROM (
    SELECT post_id, user_id, row_number() OVER (
        PARTITION BY post_id ORDER BY updated_at DESC, version DESC, user_id DESC) AS rank
    FROM post_likes WHERE post_id = ANY(%s) AND state = 'liked') AS ranked
WHERE rank <= 20 ORDER BY post_id, rank"""
NOTE_SQL = """
SELECT n.total_actors, n.updates, n.actor_ids,
       (SELECT count(*) FROM notification_actors a
        WHERE a.recipient_id = n.recipient_id AND a.post_id = n.post_id AND a.folded)
FROM notifications n WHERE n.recipient_id = %s AND n.post_id = %s"""


def rows(s: CommonSettings, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows ``sql`` returns from the edge store."""
    with psycopg.connect(s.postgres_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def edge_store_recent(s: CommonSettings, posts: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for post, user in rows(s, NEWEST_SQL, (posts,)):
        out.setdefault(post, []).append(user)
    return out


def redis_recent(s: CommonSettings, posts: list[int]) -> dict[int, list[int]]:
    r = redis.Redis.from_url(s.redis_url)
    pipe = r.pipeline(transaction=False)
    for p in posts:
        pipe.lrange(recent_key(p), 0, -1)
    lists = pipe.execute()
    return {p: [int(u) for u in users] for p, users in zip(posts, lists, strict=True) if users}


def like_all(s: CommonSettings, post: int, users: list[int], concurrency: int = 16) -> float:
    """Every user likes ``post`` once (concurrently); return the seconds it took."""
    secret = s.jwt_secret.get_secret_value()

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=s.api_url, timeout=60) as c:

            async def one(user: int) -> None:
                async with gate:
                    headers = {"Authorization": f"Bearer {issue_token(secret, user)}"}
                    r = await c.post(f"/v1/posts/{post}/like", headers=headers)
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(one(u) for u in users))

    t0 = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - t0


def register(s: CommonSettings, author: int) -> int:
    post = fresh_id()
    r = httpx.put(
        f"{s.api_url}/v1/posts/{post}",
        json={"author_id": author},
        headers=auth(s, fresh_id(), "posts:write"),
    )
    assert r.status_code == 201, r.text
    return post
