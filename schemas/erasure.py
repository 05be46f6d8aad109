"""Erasure records in the edge store (``erased_users``, ``erasure_jobs``; migration 006):
the statements both the API (``DELETE /v1/users/{id}``) and ``likes erase-user`` use to
request an erasure and to read a job, so the two can never disagree."""

from __future__ import annotations

OPEN_STATUSES = ("pending", "running")

REQUEST_SQL = """
WITH erased AS (
    INSERT INTO erased_users (user_id) VALUES (%(user_id)s) ON CONFLICT DO NOTHING),
open AS (
    SELECT job_id FROM erasure_jobs
    WHERE user_id = %(user_id)s AND status IN ('pending', 'running')),
job AS (
    INSERT INTO erasure_jobs (job_id, user_id, requested_by)
    SELECT %(job_id)s, %(user_id)s, %(requested_by)s WHERE NOT EXISTS (SELECT 1 FROM open)
    ON CONFLICT DO NOTHING
    RETURNING job_id)
SELECT job_id FROM job UNION ALL SELECT job_id FROM open"""
"""Mark the user erased and open a job, or join the user's open one: returns its id
(no row only when a concurrent request opened one meanwhile: run it again)."""

JOB_COLUMNS = (
    "job_id",
    "user_id",
    "requested_by",
    "status",
    "attempts",
    "progress",
    "error",
    "created_at",
    "started_at",
    "finished_at",
)
JOB_SQL = f"SELECT {', '.join(JOB_COLUMNS)} FROM erasure_jobs WHERE job_id = %s"
"""One job, columns in ``JOB_COLUMNS`` order."""
