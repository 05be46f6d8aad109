"""``/readyz`` answers for both kinds of edge store session the API needs: an API whose
reads work but whose like/unlike statements cannot get a session is not ready."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.settings import ApiSettings, CommonSettings
from ingest_api.app import create_app
from ingest_api.deps import AppState
from tests.api.inprocess import collector_restored

pytestmark = pytest.mark.integration


async def _readiness_with_the_writers_held(settings: ApiSettings) -> list[int]:
    app = create_app(settings)
    state: AppState = app.state.likes
    assert state.writer is not None
    statuses = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            statuses.append((await client.get("/readyz")).status_code)
            writers = state.writer.pool
            held = [await writers.getconn() for _ in range(writers.max_size)]
            try:  # every writer session busy: likes would wait and fail, reads still work
                assert (await client.get("/healthz")).status_code == 200
                statuses.append((await client.get("/readyz")).status_code)
            finally:
                for conn in held:
                    await writers.putconn(conn)
            statuses.append((await client.get("/readyz")).status_code)
    return statuses


def test_readyz_fails_when_only_the_writer_sessions_are_unavailable(
    stack: CommonSettings,
) -> None:
    settings = ApiSettings(pg_timeout_s=0.5, group_commit=True)
    with collector_restored():
        statuses = asyncio.run(_readiness_with_the_writers_held(settings))
    assert statuses == [200, 503, 200]
