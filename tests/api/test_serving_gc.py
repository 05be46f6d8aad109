"""The API process keeps the cyclic garbage collector off its request path: after
start-up its objects are frozen out of the collector's passes and the young generation
is collected far less often than CPython's default (the cause of its p99 under load)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from core.settings import CommonSettings
from ingest_api.app import GC_THRESHOLDS, create_app
from tests.api.inprocess import collector_restored

pytestmark = pytest.mark.integration


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
