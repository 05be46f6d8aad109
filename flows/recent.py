"""Recent likers per post (``likes:recent:{post_id}``), kept by the fanout flow.

Per post shard, the stage holds for each active post the newest ``size + margin`` current
likers it knows (user -> like time in µs, edge version), a *horizon*, and ``seq``:

- Order: like time (the edge's ``updated_at``, exact µs) descending, then edge version,
  then user id; the edge store's ``ORDER BY updated_at DESC, version DESC, user_id DESC``.
- The horizon is the order key of the newest current liker the stage may not hold
  (None: it holds all of them). Every held liker is newer than the horizon; a like at or
  below it is not held. Trimming to ``size + margin`` and compacting an idle post raise it.
- A list is *exact* when the stage holds every liker, or at least ``size`` of them above
  the horizon. Otherwise (more than ``margin`` held likers unliked since the last trim,
  or a post that was compacted after idling) the record says so, and the sink reads the
  list from the edge store's ``post_likes (post_id, updated_at)`` index: that is where
  the 21st liker comes back from.
- A post the stage never saw has no likers, as the counts stage takes an unseen post's
  count to be 0: the flow has seen every event since it began. Where that is not so (a
  lost recovery store, ``likes flows-reset``), the backfill that follows seeds the
  stage through adoptions.
- An unlike removes the user; a like older than the user's held version changes nothing.
- A backfill's adoption (:class:`~core.records.Adoption`, one per flow-state record and
  post, from the dedupe stage) moves the post's ``seq`` to the edge store's at the
  record, forgets the held likers and keeps the horizon at least as high as they were
  (it may hold too few, or likers the edge store no longer has): until it holds ``size``
  likers that came after, the list is read from the edge store, and the record is
  *forced* (written over any stored ``seq``, which a drifted flow may have inflated).
  Likers it no longer holds all came before the record, so they are older than the
  likes that refill it (up to the few microseconds by which two concurrent statements'
  ``updated_at`` may invert their commit order).

Guarantees: ``seq`` is the sum of the edge-version increments applied to the post, so
it is monotone and the same events give the same ``seq`` whatever the batching; an
exact list is the truth of the events applied, never a function of wall time. Idle
posts are compacted on event time (``idle_ms`` behind the shard's newest event) down to
``seq`` and horizon, so a replay makes the same decisions and memory holds full lists
for active posts only.
"""

from __future__ import annotations

from collections.abc import Iterable

from bytewax.operators import StatefulBatchLogic

from core.records import Adoption, LikerChange, RecentLikers

Key = tuple[int, int, int]
"""``(occurred_us, version, user_id)``: a larger key is a more recent like."""
Held = dict[int, tuple[int, int]]
"""user -> (occurred_us, version) of the post's held current likers."""
Snapshot = tuple[
    dict[int, tuple[Held, Key | None, int, int]], dict[int, tuple[int, Key | None]], int
]


_UNKNOWN: Key = (-1, -1, -1)
"""A horizon below every like: some likers are unknown, all older than those to come."""


def _key(user: int, held: tuple[int, int]) -> Key:
    return held[0], held[1], user


class PostLikers:
    """One active post: held likers, horizon, seq, newest event time (ms)."""

    __slots__ = ("held", "horizon", "last_ms", "seq")

    def __init__(self, held: Held, horizon: Key | None, seq: int, last_ms: int) -> None:
        self.held = held
        self.horizon = horizon
        self.seq = seq
        self.last_ms = last_ms

    def apply(self, c: LikerChange, cap: int) -> None:
        """Apply one transition; keep at most ``cap`` likers."""
        self.seq += c.seq_inc
        self.last_ms = max(self.last_ms, c.occurred_us // 1000)
        cur = self.held.get(c.user_id)
        if cur is not None:
            if cur[1] >= c.version:
                return
            del self.held[c.user_id]
        if not c.liked:
            return
        key: Key = (c.occurred_us, c.version, c.user_id)
        if self.horizon is None or key > self.horizon:
            self.held[c.user_id] = (c.occurred_us, c.version)
            if len(self.held) > cap:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        user, held = min(self.held.items(), key=lambda kv: _key(*kv))
        del self.held[user]
        self._raise_horizon(_key(user, held))

    def _raise_horizon(self, key: Key) -> None:
        if self.horizon is None or key > self.horizon:
            self.horizon = key

    def newest(self, n: int) -> list[int]:
        """The ``n`` most recent held likers, newest first."""
        ranked = sorted(self.held.items(), key=lambda kv: _key(*kv), reverse=True)
        return [user for user, _ in ranked[:n]]

    def compact(self) -> tuple[int, Key | None]:
        """Forget the held likers (they become unknown): ``(seq, horizon)``."""
        for user, held in self.held.items():
            self._raise_horizon(_key(user, held))
        self.held = {}
        return self.seq, self.horizon

    def adopt(self, seq_inc: int) -> None:
        """A backfill's correction: ``seq`` moves, and likers before it become unknown."""
        self.seq += seq_inc
        self.compact()
        if self.horizon is None:
            self.horizon = _UNKNOWN


class RecentLikersShard:
    """The recent-likers state of one post shard (pure: no I/O, no wall time)."""

    def __init__(
        self, size: int, margin: int, idle_ms: int, snapshot: Snapshot | None = None
    ) -> None:
        self.size = size
        self.cap = size + margin
        self.idle_ms = idle_ms
        active, idle, max_ms = snapshot if snapshot else ({}, {}, 0)
        self.active = {p: PostLikers(dict(h), z, s, t) for p, (h, z, s, t) in active.items()}
        self.idle: dict[int, tuple[int, Key | None]] = dict(idle)
        self.max_ms = max_ms
        self._swept_ms = max_ms

    def _post(self, post_id: int) -> PostLikers:
        post = self.active.get(post_id)
        if post is None:
            seq, horizon = self.idle.pop(post_id, (0, None))
            post = self.active[post_id] = PostLikers({}, horizon, seq, 0)
        return post

    def apply(self, c: LikerChange) -> None:
        """Apply one accepted transition of the shard's posts."""
        post = self._post(c.post_id)
        post.apply(c, self.cap)
        self.max_ms = max(self.max_ms, post.last_ms)

    def adopt(self, a: Adoption) -> None:
        """Apply a backfill's correction of one of the shard's posts."""
        self._post(a.post_id).adopt(a.seq_inc)

    def record(self, post_id: int, *, forced: bool = False) -> RecentLikers:
        """The post's list as it stands (the post must have been applied to)."""
        post = self.active[post_id]
        exact = post.horizon is None or len(post.held) >= self.size
        return RecentLikers(post_id, tuple(post.newest(self.size)), post.seq, exact, forced)

    def maybe_sweep(self) -> int:
        """Compact posts idle for ``idle_ms`` of event time (a full pass at most every
        ``idle_ms / 8``); return how many."""
        if self.max_ms - self._swept_ms < self.idle_ms // 8:
            return 0
        self._swept_ms = self.max_ms
        cutoff = self.max_ms - self.idle_ms
        stale = [p for p, post in self.active.items() if post.last_ms < cutoff]
        for p in stale:
            self.idle[p] = self.active.pop(p).compact()
        return len(stale)

    def snapshot(self) -> Snapshot:
        """A copy that later mutation cannot alias."""
        active = {p: (dict(x.held), x.horizon, x.seq, x.last_ms) for p, x in self.active.items()}
        return active, dict(self.idle), self.max_ms


Change = LikerChange | Adoption


class RecentStage(StatefulBatchLogic[list[Change], RecentLikers, Snapshot]):
    """Recent likers of one post shard; emits one record per touched post per batch
    (forced where the batch held an adoption for the post)."""

    def __init__(
        self, size: int, margin: int, idle_ms: int, snapshot: Snapshot | None = None
    ) -> None:
        self.shard = RecentLikersShard(size, margin, idle_ms, snapshot)

    def on_batch(self, values: list[list[Change]]) -> tuple[list[RecentLikers], bool]:
        touched: set[int] = set()
        forced: set[int] = set()
        for group in values:
            for c in group:
                if isinstance(c, Adoption):
                    self.shard.adopt(c)
                    forced.add(c.post_id)
                else:
                    self.shard.apply(c)
                touched.add(c.post_id)
        out = [self.shard.record(p, forced=p in forced) for p in sorted(touched)]
        self.shard.maybe_sweep()
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> Snapshot:
        return self.shard.snapshot()


def group_changes(shards: int, batch: list[Change]) -> Iterable[tuple[str, list[Change]]]:
    """Transitions and adoptions grouped per post shard, in arrival order (one item per
    shard crosses workers, not one per like)."""
    per_shard: dict[int, list[Change]] = {}
    for c in batch:
        per_shard.setdefault(c.post_id % shards, []).append(c)
    return [(str(s), cs) for s, cs in per_shard.items()]
