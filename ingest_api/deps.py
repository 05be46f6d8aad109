"""Request dependencies: the app's shared clients, the caller, validated ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Header, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from pydantic import WithJsonSchema

from core.settings import ApiSettings
from ingest_api import cursor, idempotency
from ingest_api.auth import MAX_ID, Principal, verify
from ingest_api.counts import CountCache
from ingest_api.group_commit import GroupCommitter
from ingest_api.problems import ProblemError
from ingest_api.ratelimit import RateLimiter
from ingest_api.viewer_cache import ViewerCache


@dataclass
class AppState:
    """Clients shared by all requests of one process."""

    settings: ApiSettings
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    viewer: ViewerCache
    limiter: RateLimiter
    counts: CountCache
    writer: GroupCommitter | None = None


def app_state(request: Request) -> AppState:
    """The process-wide state built at start-up."""
    state: AppState = request.app.state.likes
    return state


async def get_state(request: Request) -> AppState:
    """Dependency form of :func:`app_state` (async: FastAPI runs it inline, no thread)."""
    return app_state(request)


# documents the scheme; the token is verified by ``verify`` from the raw header
_bearer = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="HS256 JWT; `sub` is the acting user id, `exp` is required.",
    auto_error=False,
)


async def get_principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> Principal:
    """The caller, from its bearer token."""
    return principal_of(request.headers.get("Authorization"), app_state(request).settings)


def principal_of(authorization: str | None, s: ApiSettings) -> Principal:
    """The principal of an ``Authorization`` header under the API's settings, or a 401."""
    return verify(authorization, s.jwt_secret.get_secret_value(), leeway_s=s.jwt_leeway_s)


def require_scope(scope: str) -> object:
    """A dependency that demands ``scope`` in the caller's token."""

    async def dep(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if scope not in principal.scopes:
            raise ProblemError(403, f"token lacks scope {scope!r}")
        return principal

    return Depends(dep)


State = Annotated[AppState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]
PostId = Annotated[int, Path(gt=0, le=MAX_ID, description="positive 64-bit post id")]
UserId = Annotated[int, Path(gt=0, le=MAX_ID, description="positive 64-bit user id")]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(
        alias="cursor",
        pattern=cursor.PATTERN,
        max_length=cursor.MAX_LENGTH,
        description="`next_cursor` of the previous page; absent or empty for the first.",
    ),
    # not nullable in the document: a query parameter is absent, never null
    WithJsonSchema({"type": "string", "pattern": cursor.PATTERN, "maxLength": cursor.MAX_LENGTH}),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=idempotency.KEY_PATTERN,
        max_length=idempotency.MAX_KEY_LEN,
        description="Retries with the same key by the same user return the first response "
        "(with `Idempotent-Replayed: true`); the same key with another request is 422, "
        "a retry while the first is in flight is 409. Kept at least 24 h.",
    ),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": idempotency.KEY_PATTERN,
            "maxLength": idempotency.MAX_KEY_LEN,
        }
    ),
]


def parse_id_list(raw: str, *, limit: int) -> list[int]:
    """``"1,2,3"`` as ids, or a 422 problem."""
    parts = [p.strip() for p in raw.split(",")] if raw.strip() else []
    if not parts or len(parts) > limit:
        raise ProblemError(422, f"post_ids must list 1..{limit} ids")
    ids = []
    for part in parts:
        if not part.isdigit() or not 0 < int(part) <= MAX_ID:
            raise ProblemError(422, f"invalid post id {part!r}")
        ids.append(int(part))
    return ids
