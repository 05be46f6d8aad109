"""Post registration from the command line, straight into the edge store."""

from __future__ import annotations

from typing import Any

import psycopg

from core.settings import CommonSettings


def add_post(s: CommonSettings, post_id: int, author_id: int) -> dict[str, Any]:
    """Register ``post_id`` by ``author_id`` (idempotent; an existing post is left as is)."""
    if not (0 < post_id < 2**63 and 0 < author_id < 2**63):
        raise SystemExit("ids must be positive 64-bit integers")
    with psycopg.connect(s.postgres_url) as conn:
        conn.execute(
            "INSERT INTO posts (post_id, author_id) VALUES (%s, %s) "
            "ON CONFLICT (post_id) DO NOTHING",
            (post_id, author_id),
        )
        row = conn.execute(
            "SELECT author_id, created_at, deleted_at FROM posts WHERE post_id = %s", (post_id,)
        ).fetchone()
    assert row is not None
    return {"post_id": post_id, "author_id": row[0], "created_at": row[1], "deleted_at": row[2]}
