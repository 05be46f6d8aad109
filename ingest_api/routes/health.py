"""Liveness, readiness (edge store reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_api.db import EdgeStoreUnavailable, connection
from ingest_api.deps import State
from ingest_api.models import Health, Readiness

router = APIRouter(tags=["health"])


class MetricsResponse(Response):
    """The Prometheus text exposition format."""

    media_type = CONTENT_TYPE_LATEST


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    response_description="Ready: the edge store answers (reads and writes).",
    responses={503: {"model": Readiness, "description": "The edge store does not answer."}},
)
async def readyz(state: State, response: Response) -> Readiness:
    """Ready when the edge store answers on the sessions of reads and of writes."""
    pools = [state.pool] + ([state.writer.pool] if state.writer is not None else [])
    try:
        for pool in pools:
            async with connection(pool) as conn:
                await conn.execute("SELECT 1")
    except EdgeStoreUnavailable:
        response.status_code = 503
        return Readiness(status="unavailable", postgres=False)
    return Readiness(status="ok", postgres=True)


@router.get("/metrics", response_class=MetricsResponse)
async def metrics() -> MetricsResponse:
    """Prometheus exposition."""
    return MetricsResponse(generate_latest())
