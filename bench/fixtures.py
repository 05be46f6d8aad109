"""Fresh ids, users' tokens and registered posts for a benchmark, through the product's code.

Tokens come from ``ingest_api.auth.issue_token``, posts are registered through the API
by ``loadgen.workload.register_posts`` (as clients do) and then checked in the edge
store, and the like route is read from the API's router.
"""

from __future__ import annotations

import asyncio
import random

import psycopg
from fastapi.routing import APIRoute

from core.settings import CommonSettings
from ingest_api.auth import issue_token
from ingest_api.routes import likes as like_routes
from loadgen.workload import register_posts as register_through_api

LIKE_ROUTE = next(
    r.path
    for r in like_routes.router.routes
    if isinstance(r, APIRoute) and r.endpoint is like_routes.like
)  # "/v1/posts/{post_id}/like", the route label in the API's metrics too


def like_path(post_id: int | str) -> str:
    """The path a like of ``post_id`` is POSTed to."""
    return LIKE_ROUTE.format(post_id=post_id)


def id_base(span: int = 10**6) -> int:
    """A random base for a fresh range of ``span`` ids, below 2**53 (Lua-safe) and unused."""
    return random.SystemRandom().randrange(10**12, 9 * 10**14) // span * span


def make_tokens(user_ids: list[int], ttl_s: int = 7200) -> list[str]:
    """A bearer token for each user."""
    key = CommonSettings().jwt_secret.get_secret_value()
    return [issue_token(key, u, ttl_s=ttl_s) for u in user_ids]


def register_posts(posts: list[int], author: int) -> None:
    """Register ``posts`` through the API, then check that the edge store has every one."""
    s = CommonSettings()
    secret = s.jwt_secret.get_secret_value()
    asyncio.run(register_through_api(s.api_url, secret, posts, author))
    with psycopg.connect(s.postgres_url, connect_timeout=10) as c:
        row = c.execute(
            "SELECT count(*) FROM posts WHERE post_id = ANY(%s) AND author_id = %s "
            "AND deleted_at IS NULL",
            (posts, author),
        ).fetchone()
    found = int(row[0]) if row else 0
    if found != len(posts):
        raise RuntimeError(f"post registration failed: {found} of {len(posts)} registered")
