"""Idempotency-Key records, scoped per user, fingerprinted, kept at least 24 h.

A key is claimed in its own commit before the work; the work's own transaction
completes it with the response. A retry of a completed key replays that response,
a retry with another request is 422, a retry while the first is in flight is 409.
A claim whose request died without completing (its database session is gone, or
``stale_s`` passed) is taken over by the next retry.

Each claim carries the request's token. The transition statement applies the request
only while that token still owns the uncompleted claim (it locks the record), so an
attempt still queued or running when a retry took its claim over changes nothing and is
answered 409: it cannot commit after the retry, nor after the client's next request.
A failed request releases only its own claim.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from ingest_api.problems import ProblemError

MAX_KEY_LEN = 255
# 1..255 visible characters, inner spaces allowed: what ``isprintable`` accepts of the
# latin-1 a header value is read as, without the blanks HTTP strips from both ends
_VISIBLE = r"\x21-\x7e\xa1-\xac\xae-\xff"
KEY_PATTERN = rf"^[{_VISIBLE}](?:[ {_VISIBLE}]{{0,{MAX_KEY_LEN - 2}}}[{_VISIBLE}])?$"
KEY_RE = re.compile(KEY_PATTERN)
REPLAYED = "Idempotent-Replayed"  # the header of an answer replayed for a repeated key

_CLAIM = """INSERT INTO idempotency_keys
    (user_id, idem_key, fingerprint, owner_pid, owner_epoch, claim_token)
VALUES (%s, %s, %s, pg_backend_pid(), pg_postmaster_start_time(), %s)
ON CONFLICT DO NOTHING RETURNING 1"""
_ORPHANED = """(status_code IS NULL AND (
    created_at < now() - make_interval(secs => %s)
    OR owner_epoch IS DISTINCT FROM pg_postmaster_start_time()
    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = owner_pid)))"""
_LOOKUP = f"""SELECT fingerprint, status_code, response, {_ORPHANED} AS stale,
       created_at < now() - make_interval(hours => %s) AS expired
FROM idempotency_keys WHERE user_id = %s AND idem_key = %s"""
_TAKEOVER = f"""UPDATE idempotency_keys
SET fingerprint = %s, status_code = NULL, response = NULL, created_at = now(), completed_at = NULL,
    owner_pid = pg_backend_pid(), owner_epoch = pg_postmaster_start_time(), claim_token = %s
WHERE user_id = %s AND idem_key = %s
  AND ({_ORPHANED} OR created_at < now() - make_interval(hours => %s))
RETURNING 1"""
_RELEASE = """DELETE FROM idempotency_keys
WHERE user_id = %s AND idem_key = %s AND status_code IS NULL AND claim_token = %s"""
PURGE_SQL = "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => %s)"


@dataclass(frozen=True)
class Replay:
    """A completed earlier response to send again."""

    status_code: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, body: bytes = b"") -> str:
    """What makes two requests "the same request"."""
    return hashlib.sha256(f"{method.upper()} {path}\n".encode() + body).hexdigest()


def validate_key(key: str) -> str:
    """The key as given, or a 422 problem when it is unusable."""
    if not KEY_RE.fullmatch(key):
        raise ProblemError(422, f"Idempotency-Key must be 1..{MAX_KEY_LEN} printable characters")
    return key


async def claim(
    conn: AsyncConnection,
    *,
    user_id: int,
    key: str,
    fp: str,
    stale_s: int,
    ttl_h: int,
    token: uuid.UUID,
) -> Replay | None:
    """Claim ``key`` for this request (None: ``token`` owns it now), or the earlier
    response to replay."""
    if await (await conn.execute(_CLAIM, (user_id, key, fp, token))).fetchone():
        return None
    row = await (await conn.execute(_LOOKUP, (stale_s, ttl_h, user_id, key))).fetchone()
    if row is None:  # deleted between our insert and lookup: claim again
        return await claim(
            conn, user_id=user_id, key=key, fp=fp, stale_s=stale_s, ttl_h=ttl_h, token=token
        )
    old_fp, status, response, stale, expired = row
    if expired or (status is None and stale):
        taken = await conn.execute(_TAKEOVER, (fp, token, user_id, key, stale_s, ttl_h))
        if await taken.fetchone():
            return None
    if old_fp != fp:
        raise ProblemError(422, "Idempotency-Key was already used for a different request")
    if status is None:
        raise ProblemError(
            409,
            "a request with this Idempotency-Key is still in flight",
            headers={"Retry-After": "1"},
        )
    return Replay(status_code=int(status), body=dict(response))


async def release(conn: AsyncConnection, *, user_id: int, key: str, token: uuid.UUID) -> None:
    """Drop this request's uncompleted claim so that a retry can run the request again
    (a claim a retry took over is the retry's and stays)."""
    await conn.execute(_RELEASE, (user_id, key, token))
