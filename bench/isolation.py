"""Stores of a benchmark's own on the shared stack: an empty Redis db, a Postgres schema.

The flows under test write there, so nothing live is touched; both are emptied and
released afterwards, even if a store restarted meanwhile (:func:`bench.cleanup.retrying`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql

from bench import names
from bench.cleanup import drop_schema, retrying
from core.settings import CommonSettings

LOCK_KEY = "bench:lock"  # marks a logical db as taken by a benchmark
COUNTS_TABLE = "post_like_counts"  # what the Postgres count sink writes


def _take_empty_db(base: str) -> int:
    for db in range(15, 0, -1):
        r = redis.Redis.from_url(f"{base}/{db}")
        try:
            if r.dbsize() == 0 and r.set(LOCK_KEY, str(os.getpid()), nx=True, ex=3600):
                return db
        finally:
            r.close()
    raise RuntimeError("no empty Redis logical database for the benchmark")


@contextmanager
def isolated_redis_db() -> Iterator[str]:
    """A Redis URL on the stack's server but an empty logical db; its keys removed after."""
    base = CommonSettings().redis_url.rsplit("/", 1)[0]
    db = _take_empty_db(base)
    url = f"{base}/{db}"

    def release() -> None:
        clear_redis(url)
        redis.Redis.from_url(url).delete(LOCK_KEY)

    try:
        yield url
    finally:
        retrying(f"keys of Redis db {db}", release)


def clear_redis(url: str) -> None:
    """Delete every key of the benchmark's own logical db but its lock."""
    r = redis.Redis.from_url(url)
    batch: list[bytes] = []
    for k in r.scan_iter(count=5000):
        if k != LOCK_KEY.encode():
            batch.append(k)
        if len(batch) >= 5000:
            r.delete(*batch)
            batch.clear()
    if batch:
        r.delete(*batch)
    r.close()


@contextmanager
def isolated_pg_schema() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh schema with its own count table."""
    base = CommonSettings().postgres_url
    schema = names.schema()
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        c.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(schema, COUNTS_TABLE), sql.Identifier("public", COUNTS_TABLE)
            )
        )
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        retrying(f"drop schema {schema}", lambda: drop_schema(schema))


def truncate_counts(url: str) -> None:
    """Empty the count table that ``url``'s search_path points at."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(COUNTS_TABLE)))
