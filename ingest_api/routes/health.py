"""Liveness, readiness (edge store reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_api.db import EdgeStoreUnavailable, connection
from ingest_api.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Ready when the edge store answers."""
    try:
        async with connection(state.pool) as conn:
            await conn.execute("SELECT 1")
    except EdgeStoreUnavailable:
        return JSONResponse({"status": "unavailable", "postgres": False}, status_code=503)
    return JSONResponse({"status": "ok", "postgres": True})


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
