"""The fanout flow: ``likes.events`` to notifications, recent likers and the trending
ranking signal.

Guarantees under replay and crash (Bytewax recovery, at-least-once input):

- Notifications: a like by someone other than the post's author goes into the actor
  ledger at once; the aggregate row is brought up to date at most once per
  ``notify_min_interval_s`` per (recipient, post) (:class:`~flows.fanout_stages.NotifyThrottle`),
  and not at all while the post is muted. The ledger's primary key makes a replayed
  like a no-op, and a fold adds only ledger actors not yet in the aggregate, in the same
  transaction, so replays and extra folds change nothing.
- Recent likers: absolute lists with a monotone ``seq`` (:mod:`flows.recent`), written by
  compare-and-set, so a replay rewrites nothing; a backfill's flow-state record sets a
  post's ``seq`` to the edge store's at the record's position (:mod:`flows.adoption`)
  and its list is then written over whatever the sink holds, so drift in the flow's own
  state (a lost recovery store) does not outlive the next backfill.
- Trending scores are absolute values that a replay rewrites identically.

Step ids are permanent (``tests/flows/test_step_ids.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import Sink

from core.records import Accepted, DeadLetter, NotificationUpdate, RecentLikers, TrendOut
from core.settings import FlowSettings
from flows.fanout_stages import Deduped, DedupeStage, NotifyThrottle, TrendStage
from flows.kafka_input import EventSource, kafka_events
from flows.progress import OffsetProgress
from flows.recent import RecentStage, group_changes
from flows.streams import output
from sinks.owner import RoutedSink


@dataclass
class FanoutSinks:
    """Where each output of the fanout flow goes (tests pass ``TestingSink``s)."""

    dead_letters: Sink[DeadLetter]
    notifications: Sink[NotificationUpdate] | RoutedSink[NotificationUpdate]
    trending: Sink[TrendOut]
    recent: Sink[RecentLikers] | None = None
    """``likes:recent:{post_id}``; None computes the lists and writes them nowhere."""


def notifies(a: Accepted) -> bool:
    """A new like by someone other than the post's author."""
    return a.delta > 0 and a.author_id is not None and a.author_id != a.user_id


def combine_likes(shards: int, batch: list[Accepted]) -> Iterable[tuple[str, dict[int, list[int]]]]:
    """Like times per post, grouped per trending shard."""
    per_shard: dict[int, dict[int, list[int]]] = {}
    for a in batch:
        if a.delta > 0:
            per_shard.setdefault(a.post_id % shards, {}).setdefault(a.post_id, []).append(
                a.occurred_ms
            )
    return [(str(s), p) for s, p in per_shard.items()]


def group_notifying(shards: int, batch: list[Accepted]) -> Iterable[tuple[str, list[Accepted]]]:
    """Notifying likes grouped per post shard (one item per shard crosses workers)."""
    per_shard: dict[int, list[Accepted]] = {}
    for a in batch:
        per_shard.setdefault(a.post_id % shards, []).append(a)
    return [(str(s), group) for s, group in per_shard.items()]


def build_flow(
    s: FlowSettings,
    sinks: FanoutSinks,
    source: EventSource | None = None,
    flow_id: str = "likes_fanout",
    progress: OffsetProgress | None = None,
) -> Dataflow:
    """The fanout dataflow; ``source`` replaces Kafka in tests and benchmarks, and
    ``progress`` (if given) receives the offsets read, for ``likes status``."""
    flow = Dataflow(flow_id)
    kin = kafka_events("read_events", flow, s, source, progress)
    op.output("write_dlq", kin.dead, sinks.dead_letters)
    ttl_ms = s.dedupe_ttl_s * 1000
    store_dir = s.edge_store_path("fanout")

    def dedupe_builder(resume: Any) -> DedupeStage:
        return DedupeStage(ttl_ms, resume, store_dir=store_dir)

    # one item per stage batch from here: each grouping step reads the batches' lists,
    # so no step pays Bytewax's per-item cost per event
    outs = op.map("unkey_dedupe", op.stateful_batch("dedupe", kin.events, dedupe_builder), _value)

    def trend_builder(resume: Any) -> TrendStage:
        return TrendStage(s.trending_half_life_s, resume)

    partials = op.flat_map_batch(
        "combine_likes",
        outs,
        lambda b: combine_likes(s.count_shards, [a for o in b for a in o.accepted]),
    )
    scores = op.stateful_batch("trend_posts", partials, trend_builder)
    op.output("write_trending", op.map("unkey_trending", scores, lambda kv: kv[1]), sinks.trending)

    _notifications(s, outs, sinks.notifications)
    _recent_likers(s, outs, sinks.recent)
    return flow


def _value(kv: tuple[str, Deduped]) -> Deduped:
    return kv[1]


def _notifications(
    s: FlowSettings,
    outs: Stream[Deduped],
    sink: Sink[NotificationUpdate] | RoutedSink[NotificationUpdate],
) -> None:
    """Notifying likes, rate-limited per (recipient, post), into ``sink``."""

    def throttle_builder(resume: Any) -> NotifyThrottle:
        return NotifyThrottle(s.notify_min_interval_s, resume)

    notifying = op.flat_map_batch(
        "group_notifications",
        outs,
        lambda b: group_notifying(
            s.count_shards, [a for o in b for a in o.accepted if notifies(a)]
        ),
    )
    updates = op.stateful_batch("throttle_notifications", notifying, throttle_builder)
    output("write_notifications", op.map("unkey_notifications", updates, lambda kv: kv[1]), sink)


def _recent_likers(s: FlowSettings, outs: Stream[Deduped], sink: Sink[RecentLikers] | None) -> None:
    """Each touched post's recent likers, per batch, into ``sink`` (if any)."""

    def recent_builder(resume: Any) -> RecentStage:
        return RecentStage(s.recent_likers, s.recent_margin, s.recent_idle_s * 1000, resume)

    changes = op.flat_map_batch(
        "group_changes",
        outs,
        lambda b: group_changes(s.count_shards, [c for o in b for c in o.changes]),
    )
    recent = op.stateful_batch("recent_likers", changes, recent_builder)
    if sink is not None:
        op.output("write_recent", op.map("unkey_recent", recent, lambda kv: kv[1]), sink)
