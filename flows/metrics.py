"""Prometheus metrics of the flow processes (contract section 7), defined once.

Each flow process serves the default registry on its own port (:func:`serve`, started
by :mod:`flows.runner`), so besides the series below it also serves the sinks'
``likes_sink_*`` series, the Redis count sink's ``likes_freshness_seconds`` and Bytewax's
own ``bytewax_kafka_consumer_lag`` (per partition).

- ``likes_flow_events_total{flow}``: valid events decoded and handed to dedupe
  (duplicates included); ``likes_flow_dedupe_dropped_total{flow}``: those dedupe
  dropped (duplicates, stale versions); ``likes_flow_dead_letters_total{flow}``: dead
  letters written to the DLQ; ``likes_flow_late_events_total``: transitions that came
  after their window had closed (they become correction rows). The stages count once per
  batch, never per event. A batch replayed after a crash is counted again.
- ``likes_flow_state_edges{flow,partition}``: edges a dedupe stage holds for one Kafka
  partition, set at each snapshot (edges seen within the dedupe TTL): the flow's memory
  and the time a resume takes to load them from the edge store grow with it.
- ``likes_hot_posts`` and ``likes_hot_post_share``: from the count stage's hot detectors,
  combined over the process's count shards at scrape time (:class:`HotFigures`); only a
  process that runs count shards has them.

The lag of each flow (``likes_flow_lag_messages``) is measured outside the flow, by the
exporter (:mod:`ops.exporter`), so that it keeps growing while a flow is down.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Iterable
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.topology import metrics_port as metrics_port  # re-exported: where a process serves

log = logging.getLogger(__name__)
X = TypeVar("X")

FLOW_EVENTS = Counter(
    "likes_flow_events_total", "Valid events a flow decoded and handed to dedupe", ["flow"]
)
FLOW_DEDUPE_DROPPED = Counter(
    "likes_flow_dedupe_dropped_total",
    "Events dedupe dropped (duplicates and stale edge versions)",
    ["flow"],
)
FLOW_DEAD_LETTERS = Counter(
    "likes_flow_dead_letters_total", "Messages a flow wrote to the dead-letter topic", ["flow"]
)
FLOW_STATE_EDGES = Gauge(
    "likes_flow_state_edges",
    "Edges a flow's dedupe state holds for one Kafka partition (as of its last snapshot)",
    ["flow", "partition"],
)
FLOW_LATE_EVENTS = Counter(
    "likes_flow_late_events_total",
    "Transitions that came after their window closed (written as correction rows)",
)


def init_flow_series(flow: str) -> None:
    """Create the flow's labelled children at 0, so every series exists from the start."""
    for counter in (FLOW_EVENTS, FLOW_DEDUPE_DROPPED, FLOW_DEAD_LETTERS):
        counter.labels(flow)


def serve(host: str, port: int) -> bool:
    """Serve the default registry on ``host:port`` in a daemon thread; False (logged) if
    the port is taken: the flow runs on without metrics and its scrape target shows down."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    try:
        start_http_server(port, addr=host)
    except OSError as e:
        log.error("metrics server on %s:%d failed: %s; running without /metrics", host, port, e)
        return False
    log.info("serving /metrics on %s:%d", host, port)
    return True


class HotFigures:
    """Hot-post figures of each count shard of this process: ``(hot posts, likes in the
    trailing window, likes of the shard's busiest post)``.

    A shard's stage sets its own entry from its worker thread; the scrape thread reads
    a copy. Both are single dict operations, atomic under the GIL (CPython 3.11), so no
    lock is taken. An entry goes when its stage is garbage-collected.
    """

    def __init__(self) -> None:
        self._shards: dict[int, tuple[int, int, int]] = {}
        self._keys = itertools.count()
        self.expected = False

    def expect(self) -> None:
        """This process runs count shards: report zeros until one has figures."""
        self.expected = True

    def register(self, owner: object) -> int:
        """A key for ``owner``'s figures, dropped when ``owner`` is collected."""
        key = next(self._keys)
        weakref.finalize(owner, self._shards.pop, key, None)
        return key

    def set(self, key: int, hot: int, likes: int, top: int) -> None:
        """Replace the figures of shard ``key``."""
        self._shards[key] = (hot, likes, top)

    def totals(self) -> tuple[int, int, float] | None:
        """Hot posts, likes in the window, and the busiest post's share of them (0 with
        no likes); None when no count shard runs here and none is expected."""
        shards = list(self._shards.values())
        if not shards:
            return (0, 0, 0.0) if self.expected else None
        likes = sum(s[1] for s in shards)
        top = max(s[2] for s in shards)
        return sum(s[0] for s in shards), likes, (top / likes if likes else 0.0)


class HotCollector(Collector):
    """``likes_hot_posts`` and ``likes_hot_post_share`` of a :class:`HotFigures`."""

    def __init__(self, figures: HotFigures) -> None:
        self._figures = figures

    def describe(self) -> Iterable[Metric]:
        return [_hot_posts(0), _hot_share(0.0)]

    def collect(self) -> Iterable[Metric]:
        totals = self._figures.totals()
        if totals is None:
            return []
        hot, _, share = totals
        return [_hot_posts(hot), _hot_share(share)]


def _hot_posts(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily("likes_hot_posts", "Posts currently hot", value=value)


def _hot_share(value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "likes_hot_post_share",
        "Share of the trailing hot window's likes (one minute) that went to the busiest post",
        value=value,
    )


HOT_FIGURES = HotFigures()
HOT_COLLECTOR = HotCollector(HOT_FIGURES)
REGISTRY.register(HOT_COLLECTOR)


class CountedSink(DynamicSink[X]):
    """``inner``, counting the items each partition wrote into ``counter``."""

    def __init__(self, inner: DynamicSink[X], counter: Counter) -> None:
        self.inner = inner
        self.counter = counter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountedPartition[X]:
        return _CountedPartition(
            self.inner.build(step_id, worker_index, worker_count), self.counter
        )


class _CountedPartition(StatelessSinkPartition[X], Generic[X]):
    def __init__(self, inner: StatelessSinkPartition[X], counter: Counter) -> None:
        self._inner = inner
        self._counter = counter

    def write_batch(self, items: list[X]) -> None:
        self._inner.write_batch(items)
        if items:
            self._counter.inc(len(items))

    def close(self) -> None:
        self._inner.close()
