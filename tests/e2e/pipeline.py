"""Helpers for end-to-end checks: drive load, wait for the projections to converge."""

from __future__ import annotations

import asyncio

from core.settings import CommonSettings
from loadgen.parallel import run_parallel
from loadgen.workload import Workload, WorkloadResult, register_posts
from ops.drift import converge as converge  # where the end-to-end tests import it from
from tests.conftest import fresh_id


def new_posts(s: CommonSettings, n: int) -> list[int]:
    posts = [fresh_id() for _ in range(n)]
    asyncio.run(register_posts(s.api_url, s.jwt_secret.get_secret_value(), posts, fresh_id()))
    return posts


def drive(
    s: CommonSettings, posts: list[int], operations: int, processes: int = 1, **kw: object
) -> WorkloadResult:
    """Drive the workload through the API; ``processes`` > 1 uses several client processes."""
    w = Workload(posts=posts, operations=operations, seed=fresh_id() % 10_000, **kw)  # type: ignore[arg-type]
    return run_parallel(s.api_url, s.jwt_secret.get_secret_value(), w, processes)
