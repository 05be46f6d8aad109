"""Settings of the dataflow processes."""

from __future__ import annotations

from pathlib import Path

from ops.settings import CommonSettings


class FlowSettings(CommonSettings):
    """Flow knobs; every field is ``LIKES_<NAME>`` in the environment.

    Defaults, and why:
    - ``snapshot_interval_s`` (10): each snapshot pickles the whole dedupe state (about
      100 ms of CPU per million edges) and stalls reading while it is written; a longer
      epoch only means a longer replay after a crash, which the sinks absorb.
    - ``dedupe_ttl_s`` (7 days): an edge idle that long is forgotten; a duplicate of its
      last event arriving later is counted again, which ``likes reconcile`` repairs. Kafka
      retention (7 days) bounds how old a redelivered event can be.
    - ``window_s`` (60): analysts' per-post tumbling windows; ``lateness_s`` (10) is how
      far event time may run behind the partition's newest event before a window closes;
      later events still reach ClickHouse as correction rows, never vanish.
    - ``hot_threshold`` (120 likes in ``hot_window_s`` = 60 s, i.e. 2 likes/s sustained)
      marks a post hot; it cools below ``hot_cool_ratio`` (0.5) of that: the gap is the
      hysteresis that keeps a post near the line from flapping.
    """

    recovery_dir: Path | None = None
    snapshot_interval_s: int = 10
    backup_interval_s: int = 60
    batch_size: int = 1000
    count_shards: int = 64
    dedupe_ttl_s: int = 7 * 24 * 3600
    window_s: int = 60
    lateness_s: int = 10
    window_emit_s: float = 2.0
    hot_window_s: int = 60
    hot_bucket_s: int = 5
    hot_threshold: int = 120
    hot_cool_ratio: float = 0.5
    hot_check_s: float = 2.0
    recovery_partitions: int = 4
    trending_half_life_s: float = 3600.0

    def recovery_path(self, flow: str) -> Path:
        """Where flow ``flow`` keeps its Bytewax recovery partitions."""
        return (self.recovery_dir or self.home / "recovery") / flow
