"""Erasure of a user: ``DELETE /v1/users/{user_id}`` and ``GET /v1/erasures/{job_id}``.

The request commits, in one statement, the user's entry in ``erased_users`` (from then
on every like or unlike by them is refused with 410, in the same statement that would
write the edge) and a job record; it answers 202 at once. The erasure worker
(``likes jobs-worker``, supervised) runs the job: it retracts every like of the user
through the normal pipeline and removes their id from every projection, recording
progress per projection in the job.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from ingest_api.auth import Principal
from ingest_api.db import connection
from ingest_api.deps import Caller, State, UserId
from ingest_api.models import ErasureJob
from ingest_api.openapi import problem_responses
from ingest_api.problems import ProblemError
from schemas.erasure import JOB_COLUMNS, JOB_SQL, REQUEST_SQL

router = APIRouter(prefix="/v1", tags=["erasure"])
ADMIN_SCOPE = "admin"
JobId = Annotated[uuid.UUID, Path(description="The erasure job's id (a UUID).")]


def _allowed(caller: Principal, user_id: int) -> bool:
    return caller.user_id == user_id or ADMIN_SCOPE in caller.scopes


def _job(row: tuple[Any, ...]) -> dict[str, Any]:
    job = dict(zip(JOB_COLUMNS, row, strict=True))
    job["job_id"] = str(job["job_id"])
    return job


@router.delete(
    "/users/{user_id}",
    status_code=202,
    response_model=ErasureJob,
    responses={
        202: {
            "description": "The erasure is under way (or already was: its open job).",
            "headers": {
                "Location": {
                    "description": "Where the job reports progress.",
                    "schema": {"type": "string"},
                }
            },
        },
        **problem_responses(401, 403, 422, 503),
    },
)
async def erase_user(
    state: State, caller: Caller, user_id: UserId, response: Response
) -> dict[str, Any]:
    """Erase a user's likes and id everywhere (the user themself, or scope `admin`)."""
    if not _allowed(caller, user_id):
        raise ProblemError(403, "only the user themself or an admin can erase a user")
    requested_by = "self" if caller.user_id == user_id else "admin"
    async with connection(state.pool) as conn:
        for _ in range(3):  # a concurrent request may open the job between our reads
            params = {"user_id": user_id, "job_id": uuid.uuid4(), "requested_by": requested_by}
            found = await (await conn.execute(REQUEST_SQL, params)).fetchone()
            if found is not None:
                break
        else:
            raise ProblemError(
                503, "concurrent erasure requests, retry", headers={"Retry-After": "1"}
            )
        row = await (await conn.execute(JOB_SQL, (found[0],))).fetchone()
    assert row is not None
    job = _job(row)
    response.headers["Location"] = f"/v1/erasures/{job['job_id']}"
    return job


@router.get(
    "/erasures/{job_id}",
    response_model=ErasureJob,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def erasure(state: State, caller: Caller, job_id: JobId) -> dict[str, Any]:
    """An erasure job's progress (the erased user themself, or scope `admin`)."""
    async with connection(state.pool) as conn:
        row = await (await conn.execute(JOB_SQL, (job_id,))).fetchone()
    if row is None:
        raise ProblemError(404, f"no erasure job {job_id}")
    job = _job(row)
    if not _allowed(caller, job["user_id"]):
        raise ProblemError(403, "only the user themself or an admin can see this job")
    return job
