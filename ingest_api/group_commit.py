"""Group commit: concurrent like/unlike requests of one API process share one statement.

Guarantees (each request sees exactly what :func:`ingest_api.likes_tx.set_like` would
give it alone):

- A request is answered only after the statement that carries it has committed; each
  row of the statement is the single-request transition (edge upsert with version + 1
  only on a change, its outbox row only on a change, completion of its idempotency
  record, 404/410 for an unknown or deleted post, 410 for an erased user).
- One statement never holds two requests for the same edge: a later request for an edge
  already in the batch waits for the next one, so an edge's requests apply in arrival
  order, each with its own version and outbox row.
- A statement that fails for a reason of its own data (not the store's availability)
  is retried request by request, so a bad row fails only its own request; if the store
  is unreachable every request of the batch gets 503 and nothing of it is committed.
- A batch's successful results are handed to ``on_commit`` (the viewer cache: one
  Redis call per batch) before any of its requests is answered, so what a request
  acknowledges is already visible to the same user's next read.
- A batch starts as soon as the previous one has finished, with whatever arrived
  meanwhile (up to ``max_batch``), so batches grow with load. With ``wait_s``
  (``ApiSettings.group_commit_wait_ms``, 2 ms by default) a batch that is not full
  first waits for the requests already inside the process on their way to it
  (:meth:`GroupCommitter.arriving`: their rate limit and key claim), at most
  ``wait_s`` and only while there are some: a lone request goes at once, and clients
  that wait for each answer are not held for requests that cannot come (README,
  "Group commit", has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.kafka_partition import key_hash
from ingest_api.db import connection
from ingest_api.likes_tx import LikeResult, finish, set_like
from ingest_api.metrics import GROUP_COMMIT_BATCH
from ingest_api.problems import ProblemError
from schemas.events import like_event_sql

log = logging.getLogger(__name__)

_PAYLOAD = like_event_sql(
    event_id="event_id::text",
    action="CASE WHEN liked THEN 'LikeCreated' ELSE 'LikeRemoved' END",
    post_id="post_id",
    user_id="user_id",
    version="version",
    updated_at="updated_at",
    idempotency_key="idem",
    author_id="author_id",
)
BATCH_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(i)s::int[], %(post)s::bigint[], %(usr)s::bigint[],
                         %(liked)s::boolean[], %(idem)s::text[], %(event)s::uuid[],
                         %(token)s::uuid[], %(hash)s::int[])
        AS r(i, post_id, user_id, liked, idem, event_id, token, key_hash)),
own AS (
    SELECT req.i FROM req JOIN idempotency_keys k
        ON k.user_id = req.user_id AND k.idem_key = req.idem AND k.claim_token = req.token
    WHERE k.status_code IS NULL
    FOR UPDATE OF k),
lost AS (
    SELECT req.i FROM req
    WHERE req.idem IS NOT NULL AND NOT EXISTS (SELECT 1 FROM own WHERE own.i = req.i)),
p AS (
    SELECT req.i, posts.author_id, posts.deleted_at
    FROM req JOIN posts ON posts.post_id = req.post_id),
er AS (
    SELECT req.i FROM req
    WHERE EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = req.user_id)),
ok AS (
    SELECT req.*, p.author_id FROM req JOIN p ON p.i = req.i
    WHERE p.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM er WHERE er.i = req.i)
      AND NOT EXISTS (SELECT 1 FROM lost WHERE lost.i = req.i)),
ins AS (
    INSERT INTO post_likes AS e (post_id, user_id, state, created_at, updated_at, version,
                                 key_hash)
    SELECT post_id, user_id, 'liked', now(), now(), 1, key_hash FROM ok WHERE liked
    ORDER BY post_id, user_id
    ON CONFLICT (post_id, user_id) DO UPDATE
        SET state = 'liked', updated_at = now(), version = e.version + 1
        WHERE e.state <> 'liked'
    RETURNING e.post_id, e.user_id, e.version, e.updated_at),
upd AS (
    UPDATE post_likes AS e SET state = 'unliked', updated_at = now(), version = e.version + 1
    FROM ok
    WHERE NOT ok.liked AND e.post_id = ok.post_id AND e.user_id = ok.user_id
      AND e.state = 'liked'
    RETURNING e.post_id, e.user_id, e.version, e.updated_at),
up AS (
    SELECT ok.i, ok.post_id, ok.user_id, ok.liked, ok.idem, ok.event_id, ok.author_id,
           x.version, x.updated_at
    FROM (SELECT * FROM ins UNION ALL SELECT * FROM upd) AS x
    JOIN ok ON ok.post_id = x.post_id AND ok.user_id = x.user_id),
cur AS (
    SELECT req.i, e.version, e.state FROM req
    JOIN post_likes e ON e.post_id = req.post_id AND e.user_id = req.user_id),
ob AS (
    INSERT INTO like_outbox (event_id, edge_key, post_id, user_id, action, edge_version,
                             occurred_at, idempotency_key, payload)
    SELECT event_id, post_id || ':' || user_id, post_id, user_id,
           CASE WHEN liked THEN 'LikeCreated' ELSE 'LikeRemoved' END, version, updated_at,
           idem,
           {_PAYLOAD}
    FROM up
    RETURNING 1),
res AS (
    SELECT req.i, up.i IS NOT NULL AS changed,
           coalesce(up.version, cur.version, 0) AS version,
           up.i IS NOT NULL
             OR coalesce(cur.state, 'unliked')
                = CASE WHEN req.liked THEN 'liked' ELSE 'unliked' END AS consistent
    FROM req LEFT JOIN up ON up.i = req.i LEFT JOIN cur ON cur.i = req.i),
idem AS (
    UPDATE idempotency_keys AS k SET status_code = 200, completed_at = now(),
        response = jsonb_build_object('post_id', ok.post_id, 'user_id', ok.user_id,
            'liked', ok.liked, 'changed', res.changed, 'version', res.version)
    FROM ok JOIN res ON res.i = ok.i
    WHERE ok.idem IS NOT NULL AND k.user_id = ok.user_id AND k.idem_key = ok.idem
      AND res.consistent
    RETURNING 1)
SELECT req.i, (SELECT p.deleted_at IS NOT NULL FROM p WHERE p.i = req.i), res.changed,
       res.version, res.consistent, EXISTS (SELECT 1 FROM er WHERE er.i = req.i),
       EXISTS (SELECT 1 FROM lost WHERE lost.i = req.i)
FROM req JOIN res ON res.i = req.i
ORDER BY req.i"""


def _own_copy(error: Exception) -> Exception:
    """A problem of its own for each request (an exception object is raised once)."""
    if isinstance(error, ProblemError):
        return ProblemError(error.status, error.detail, headers=dict(error.headers))
    return error


@dataclass
class _Request:
    post_id: int
    user_id: int
    liked: bool
    idem_key: str | None
    future: asyncio.Future[LikeResult] = field(repr=False)
    claim_token: uuid.UUID | None = None
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def edge(self) -> tuple[int, int]:
        return self.post_id, self.user_id


class GroupCommitter:
    """Batches like/unlike transitions of this process into shared statements."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        max_batch: int = 256,
        on_commit: Callable[[list[LikeResult]], Awaitable[None]] | None = None,
        wait_s: float = 0.0,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._on_commit = on_commit
        self._queue: deque[_Request] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._arriving = 0  # requests on their way to set_like (see ``arriving``)
        self._joined = asyncio.Event()  # a request was queued or stopped arriving

    @property
    def pool(self) -> AsyncConnectionPool:
        """Where the batches run (the caller opens and closes it)."""
        return self._pool

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request that is on its way to :meth:`set_like` (its checks before the
        transition: rate limit, idempotency claim). With ``wait_s``, a batch waits for
        such requests, at most ``wait_s``, and only while there are some."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._joined.set()

    async def set_like(
        self,
        *,
        post_id: int,
        user_id: int,
        liked: bool,
        idem_key: str | None = None,
        claim_token: uuid.UUID | None = None,
    ) -> LikeResult:
        """Queue the transition; its result once the statement carrying it committed
        (with ``idem_key``: applied only while ``claim_token`` owns its claim)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="group-commit")
        future: asyncio.Future[LikeResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(post_id, user_id, liked, idem_key, future, claim_token))
        self._ready.set()
        self._joined.set()
        return await future

    async def close(self) -> None:
        """Stop the flusher (pending requests fail)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            req = self._queue.popleft()
            if not req.future.done():
                req.future.set_exception(RuntimeError("the API is shutting down"))

    def _take(self) -> list[_Request]:
        """Up to ``max_batch`` queued requests, one per edge, in arrival order; the rest
        (later requests for an edge already taken) stay queued, in order."""
        batch: list[_Request] = []
        edges: set[tuple[int, int]] = set()
        kept: deque[_Request] = deque()
        while self._queue and len(batch) < self._max_batch:
            req = self._queue.popleft()
            if req.future.done():  # the client went away
                continue
            if req.edge in edges:
                kept.append(req)
            else:
                edges.add(req.edge)
                batch.append(req)
        kept.extend(self._queue)
        self._queue = kept
        return batch

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            await self._await_arriving()
            batch = self._take()
            if not self._queue:
                self._ready.clear()
            if not batch:
                continue
            GROUP_COMMIT_BATCH.observe(len(batch))
            try:
                await self._commit(batch)
            except Exception as e:  # the store is unavailable: every request learns it
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(_own_copy(e))

    async def _await_arriving(self) -> None:
        """Let the requests already on their way join a batch that is not full, for at
        most ``wait_s``: none is waited for that has not reached the API yet."""
        if not self._wait_s:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while self._arriving and len(self._queue) < self._max_batch:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._joined.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), left)

    async def _commit(self, batch: list[_Request]) -> None:
        done: list[tuple[_Request, LikeResult]] = []
        try:
            await self._apply(batch, done)
        finally:  # what committed is answered, even if the store failed later on
            if done:
                await self._publish(done)

    async def _apply(self, batch: list[_Request], done: list[tuple[_Request, LikeResult]]) -> None:
        """Commit the batch; successful results go to ``done``, failures to their own
        requests; an unavailable store raises (for every request not yet in ``done``)."""
        async with connection(self._pool) as conn:
            try:
                rows = await self._execute(conn, batch)
            except psycopg.errors.TransactionRollback:  # a deadlock with another process
                log.warning("a batch of %d transitions was rolled back; one by one", len(batch))
                await self._one_by_one(conn, batch, done)
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                log.warning("a batch of %d transitions failed; retrying one by one", len(batch))
                await self._one_by_one(conn, batch, done)
            else:
                for req, row in zip(batch, rows, strict=True):
                    if req.future.done():
                        continue
                    try:
                        result = await finish(
                            conn,
                            row[1:],
                            post_id=req.post_id,
                            user_id=req.user_id,
                            liked=req.liked,
                            idem_key=req.idem_key,
                            claim_token=req.claim_token,
                        )
                    except Exception as e:
                        req.future.set_exception(e)
                    else:
                        done.append((req, result))

    async def _publish(self, done: list[tuple[_Request, LikeResult]]) -> None:
        """Hand committed results to ``on_commit``, then answer their requests."""
        try:
            if self._on_commit is not None:
                await self._on_commit([result for _, result in done])
        except Exception as e:  # committed, but not made visible: the outcome is unknown
            log.exception("on_commit failed for %d committed transitions", len(done))
            for req, _ in done:
                if not req.future.done():
                    req.future.set_exception(_own_copy(e))
            return
        for req, result in done:
            if not req.future.done():
                req.future.set_result(result)

    async def _execute(self, conn: AsyncConnection, batch: list[_Request]) -> list[Any]:
        params = {
            "i": list(range(len(batch))),
            "post": [r.post_id for r in batch],
            "usr": [r.user_id for r in batch],
            "liked": [r.liked for r in batch],
            "idem": [r.idem_key for r in batch],
            "event": [r.event_id for r in batch],
            "token": [r.claim_token for r in batch],
            "hash": [key_hash(r.post_id, r.user_id) for r in batch],
        }
        return await (await conn.execute(BATCH_SQL, params)).fetchall()

    async def _one_by_one(
        self, conn: AsyncConnection, batch: list[_Request], done: list[tuple[_Request, LikeResult]]
    ) -> None:
        for req in batch:
            if req.future.done():
                continue
            try:
                result = await set_like(
                    conn,
                    post_id=req.post_id,
                    user_id=req.user_id,
                    liked=req.liked,
                    idem_key=req.idem_key,
                    claim_token=req.claim_token,
                )
            except psycopg.OperationalError:
                raise
            except Exception as e:
                req.future.set_exception(e)
            else:
                done.append((req, result))
