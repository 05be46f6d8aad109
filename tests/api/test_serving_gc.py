"""The API process keeps the cyclic garbage collector off its request path: after
start-up its objects are frozen out of the collector's passes and the young generation
is collected far less often than CPython's default (the cause of its p99 under load)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

import pytest

from core.settings import CommonSettings
from ingest_api.app import GC_THRESHOLDS, create_app

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def collector_restored() -> Iterator[tuple[int, int, int]]:
    """Undo what an app's start-up does to this process's collector (it freezes objects
    and sets thresholds) when a test runs the app in-process; the thresholds before."""
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_start_up_freezes_its_objects_and_sets_the_serving_thresholds(
    stack: CommonSettings,
) -> None:
    app = create_app()

    async def serve() -> tuple[tuple[int, int, int], int]:
        async with app.router.lifespan_context(app):
            return gc.get_threshold(), gc.get_freeze_count()

    with collector_restored() as before:
        thresholds, frozen = asyncio.run(serve())
    assert thresholds == GC_THRESHOLDS != before
    assert frozen > 10_000, "the app's start-up objects are frozen"
