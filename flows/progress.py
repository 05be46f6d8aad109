"""Which offsets a flow process has read, published for ``likes status``.

An :class:`OffsetProgress` is created by whoever runs a flow (one per process) and passed
both to the flow, whose ``track_offsets`` step records the next offset of each Kafka
partition it reads, and to :func:`start_publisher`, whose daemon thread writes them to
the Redis hash ``likes:flow_progress:<flow>`` every second with a heartbeat, and the
time its gathered sinks have written through (``likes:flow_written:<flow>:<member>``). Status
compares them with Kafka's end offsets to report lag, and ``likes reconcile`` requires a
flow to have passed a fence before it calls a value stuck. There is no module-level
state: two flows (or tests) in one process never see each other's offsets. Recorded
offsets only grow, except through :func:`restart_at` (a flow told to skip ahead starts
its record again). Best effort: a Redis outage only hides lag.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage

from flows.decode import RawPartition
from schemas.redis_keys import flow_heartbeat_key, flow_progress_key, flow_written_key

log = logging.getLogger(__name__)
WRITTEN_TTL_S = 60  # a member gone for this long no longer holds its flow's mark back


class OffsetProgress:
    """The next offset to read of each Kafka partition.

    Safe to share between worker threads and the publisher thread without a lock (this
    runs once per message): each Kafka partition is read by exactly one worker, so each
    key has one writer, and int-keyed dict reads, writes and copies are atomic under the
    GIL (the project runs CPython 3.11).
    """

    def __init__(self) -> None:
        self._offsets: dict[int, int] = {}
        self._flushed: dict[str, float] = {}

    def record(
        self,
        _step_id: str,
        item: KafkaSourceMessage[Any, Any] | KafkaError[Any, Any] | RawPartition,
    ) -> None:
        """Note that ``item`` (a message, a poll's messages, a consumer error) was read
        (an ``op.inspect`` inspector); an item without an offset (a consumer error with
        no message) is ignored, an older one changes nothing."""
        partition: int | None
        offset: int | None
        if isinstance(item, RawPartition):
            # a poll's offsets of one partition ascend: the last is the greatest
            partition, offset = item.partition, item.offsets[-1] if item.offsets else None
        else:
            msg = item.msg if isinstance(item, KafkaError) else item
            partition, offset = msg.partition, msg.offset
        if (
            partition is not None
            and offset is not None
            and offset >= self._offsets.get(partition, 0)
        ):
            self._offsets[partition] = offset + 1

    def offsets(self) -> dict[int, int]:
        """A copy: partition -> the highest next offset recorded."""
        return dict(self._offsets)

    def flushed(self, step_id: str, at: float) -> None:
        """Note that gathered sink ``step_id`` has written everything handed to it before
        ``at`` (a :attr:`sinks.owner.RoutedSink.on_flushed` callback)."""
        self._flushed[step_id] = max(at, self._flushed.get(step_id, 0.0))

    def written_through(self) -> float | None:
        """The time before which every gathered sink of this process had been handed
        nothing it has not written; None while none has flushed."""
        marks = list(self._flushed.values())
        return min(marks) if marks else None


def _publish_forever(
    url: str,
    flow: str,
    member: str,
    progress: OffsetProgress | None,
    every_s: float,
    stop: threading.Event,
) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2)
    while not stop.wait(every_s):
        snapshot = progress.offsets() if progress is not None else {}
        written = progress.written_through() if progress is not None else None
        try:
            client.set(flow_heartbeat_key(member), f"{os.getpid()} {time.time()}", ex=60)
            if snapshot:
                client.hset(
                    flow_progress_key(flow), mapping={str(p): o for p, o in snapshot.items()}
                )
            if written is not None:
                client.set(flow_written_key(flow, member), repr(written), ex=WRITTEN_TTL_S)
        except redis.RedisError as e:
            log.debug("progress publish failed: %s", e)


def restart_at(url: str, flow: str, offsets: dict[int, int]) -> None:
    """Replace ``flow``'s published progress with ``offsets``, where it is about to start
    reading with empty state (``likes flows-reset``): everything below them is passed
    on purpose, so a partition that stays quiet is not shown as lagging forever."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(flow_progress_key(flow))
        if offsets:
            pipe.hset(flow_progress_key(flow), mapping={str(p): o for p, o in offsets.items()})
        pipe.execute()


def start_publisher(
    url: str,
    flow: str,
    progress: OffsetProgress | None = None,
    every_s: float = 1.0,
    *,
    member: str | None = None,
) -> threading.Event:
    """Publish ``progress`` (merged with the flow's other processes: each writes the
    partitions it reads) and this process's heartbeat (under ``member``, its component
    name; ``flow`` by default) in the background; set the returned event to stop.
    Without ``progress`` only the heartbeat is published (lag shows as unknown)."""
    if progress is None:
        log.warning("flow %s: no OffsetProgress given; publishing heartbeats only", flow)
    stop = threading.Event()
    threading.Thread(
        target=_publish_forever,
        args=(url, flow, member or flow, progress, every_s, stop),
        daemon=True,
        name=f"progress-{flow}",
    ).start()
    return stop
