"""The one settings family, read from ``LIKES_*`` environment variables.

Defaults make the local stack (started by ``make up``) work with no variable set.
:class:`CommonSettings` holds where the stores are; each process kind extends it
(:class:`ApiSettings`, :class:`FlowSettings`). Values are passed explicitly into sinks
and flows rather than imported deep inside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_BROKERS = 3  # Kafka brokers of the cluster profile (contract section 1)


class CommonSettings(BaseSettings):
    """Where the stores are and where local runtime data lives."""

    model_config = SettingsConfigDict(env_prefix="LIKES_", extra="ignore")

    home: Path = Field(default=REPO_ROOT / ".local", description="runtime data, logs, PID files")
    backfill_heartbeat_s: float = Field(
        default=10.0,
        gt=0,
        description="a running backfill refreshes its record this often; one silent for "
        "6 heartbeats is read as died (ops.backfill_runs)",
    )
    backfill_workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Bytewax worker threads of a backfill, two post_id ranges each: their "
        "waits on Postgres and Redis overlap (ops.backfill)",
    )
    profile: Literal["single", "cluster"] = Field(
        default="single",
        description="single: one process per component; cluster: the scale-out topology "
        "(core.topology)",
    )
    api_url: str = "http://127.0.0.1:8000"
    postgres_url: str = "postgresql://likes:likes@127.0.0.1:15432/likes"
    redis_url: str = "redis://127.0.0.1:16379/0"
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = 19093
    connect_url: str = "http://127.0.0.1:18083"
    clickhouse_url: str = ""
    analytics_port: int = 18124
    supervisor_port: int = 19001
    jwt_secret: SecretStr = SecretStr("likestream-dev-secret-not-for-production")
    events_topic: str = "likes.events"
    dlq_topic: str = "likes.events.dlq"
    hot_topic: str = "likes.hot_posts"
    hot_episodes_topic: str = Field(
        default="likes.hot_episodes",
        description="internal: every hot-episode change, from the counts flow to analytics",
    )
    prometheus_url: str = "http://127.0.0.1:59090"
    metrics_host: str = Field(
        default="127.0.0.1", description="where flows and the exporter serve /metrics"
    )
    exporter_port: int = 19100
    jobs_port: int = Field(
        default=19105, description="where likes jobs-worker (erasure jobs) serves /metrics"
    )
    exporter_interval_s: float = 5.0
    background_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="the nice value of the components off the request path (flows, Connect, "
        "exporter, jobs worker, Prometheus), so that under contention the API and the "
        "stores it waits on are scheduled first; 0: all alike",
    )
    flow_metrics_port_base: int = Field(
        default=19110, description="flow i of FLOWS, process p serves on base + i + p * #flows"
    )
    slot_wal_alert_bytes: int = Field(
        default=1 << 30, description="WAL retained by the replication slot that alerts"
    )
    api_processes: int = Field(
        default=1,
        ge=1,
        le=8,
        description="single profile: API processes sharing the API port, each supervised "
        "on its own (the cluster profile always runs 2)",
    )
    api_member_port_base: int = Field(
        default=18300,
        description="cluster profile: API process i also listens on base + i (below the "
        "ephemeral port range, so no outgoing connection can hold it)",
    )
    flow_cluster_port_base: int = Field(
        default=19400,
        description="cluster profile: flow i's process p talks on base + 10i + p",
    )

    @model_validator(mode="after")
    def _cluster_bootstrap(self) -> CommonSettings:
        """In the cluster profile the default bootstrap lists every broker."""
        if self.profile == "cluster" and "kafka_bootstrap" not in self.model_fields_set:
            host, _, port = self.kafka_bootstrap.rpartition(":")
            brokers = [f"{host}:{int(port) + 2 * i}" for i in range(CLUSTER_BROKERS)]
            self.kafka_bootstrap = ",".join(brokers)
        return self

    @property
    def effective_clickhouse_url(self) -> str:
        """The ClickHouse URL; embedded chDB under ``home`` unless set."""
        return self.clickhouse_url or f"chdb://{(self.home / 'chdb').resolve()}"

    def public_dict(self) -> dict[str, str]:
        """Effective settings for display, secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = "**********" if isinstance(value, SecretStr) else str(value)
        out["clickhouse_url"] = self.effective_clickhouse_url
        return out


class ApiSettings(CommonSettings):
    """The API's knobs; every field is ``LIKES_<NAME>`` in the environment."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    pg_pool_min: int = 4
    pg_pool_max: int = 32
    pg_timeout_s: float = 3.0
    rate_limit_requests: int = 120
    rate_limit_window_s: int = 10
    viewer_cache_ttl_s: int = 3600
    idempotency_ttl_h: int = 24
    idempotency_stale_s: int = 30
    outbox_retention_s: int = 3600
    jwt_leeway_s: int = 5
    liked_by_budget: int = Field(
        default=10_000,
        ge=0,
        description="index entries liked_by may visit per request (see ingest_api.liked_by)",
    )
    count_cache_ttl_s: float = Field(
        default=1.0, ge=0, le=1.0, description="in-process count cache lifetime; 0: off"
    )
    count_cache_size: int = Field(default=10_000, ge=0, description="posts it keeps at most")
    group_commit: bool = Field(
        default=True,
        description="concurrent like/unlike requests share one statement (ingest_api.group_commit)",
    )
    group_commit_max_batch: int = Field(
        default=256, ge=1, le=10_000, description="requests per shared statement at most"
    )
    group_commit_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=50,
        description="how long a batch that is not full may wait for the like requests "
        "already inside this process, on their way to it (rate limit, key claim); it "
        "never waits for requests that have not arrived (0: no wait)",
    )
    api_stall_s: float = Field(
        default=30.0,
        ge=0,
        description="an API process whose event loop does not turn for this long dumps its "
        "threads' stacks to its log and exits, so its supervisor restarts it "
        "(core.watchdog; armed by `likes api`, five times as long at start-up); 0: never",
    )


class FlowSettings(CommonSettings):
    """Flow knobs; every field is ``LIKES_<NAME>`` in the environment.

    Defaults, and why:
    - ``snapshot_interval_s`` (60): the worker stops reading while a snapshot is taken.
      Before the edge store (``edge_store``, on in ``likes flow``), each snapshot pickled
      every partition's whole dedupe map (about 100 ms of CPU per million edges, plus
      writing it to the recovery store), so the stall grew with the edges seen within
      the dedupe TTL: on a stack holding 3.75 million edges, every 10 s put Redis
      freshness p99 at 1.1-1.3 s at 100 likes/s, every 60 s kept up with 600 likes/s.
      With the edge store an epoch's snapshot costs the edges it changed (about 3 µs
      each), so a shorter interval is affordable again; 60 s stays the default until
      that is measured end to end. A longer epoch only means a longer replay after a
      crash (up to a minute of events), which the sinks absorb.
    - ``dedupe_ttl_s`` (7 days): an edge idle that long is forgotten; a duplicate of its
      last event arriving later is counted again, which ``likes reconcile`` repairs. Kafka
      retention (7 days) bounds how old a redelivered event can be.
    - ``window_s`` (60): analysts' per-post tumbling windows; ``lateness_s`` (10) is how
      far event time may run behind the partition's newest event before a window closes;
      later events still reach ClickHouse as correction rows, never vanish.
    - ``hot_threshold`` (120 likes in ``hot_window_s`` = 60 s, i.e. 2 likes/s sustained)
      marks a post hot; it cools below ``hot_cool_ratio`` (0.5) of that: the gap is the
      hysteresis that keeps a post near the line from flapping.
    - ``notify_min_interval_s`` (5): a like storm updates a post's notification at most
      this often (the actor ledger still records every actor at once); the last update
      comes at most this long after the storm ends.
    - ``recent_likers`` (20, contract section 6) and ``recent_margin`` (20): the fanout
      flow keeps the newest 40 current likers per post, so 21 unlikes in a row among
      them are needed before it must read the list from the edge store.
    """

    recovery_dir: Path | None = None
    edge_store: bool = Field(
        default=False,
        description="keep each partition's dedupe map in files beside the recovery store "
        "(flows.edge_store) so a snapshot costs the edges an epoch changed; `likes flow` "
        "turns it on unless LIKES_EDGE_STORE says otherwise",
    )
    snapshot_interval_s: int = 60
    backup_interval_s: int = 60
    flow_stall_s: float = Field(
        default=60.0,
        ge=0,
        description="a flow process whose main loop neither polls its input nor retries a "
        "sink write for this long dumps its threads' stacks to its log and exits, so its "
        "supervisor restarts it (core.watchdog); start-up may take five times as long; "
        "0: never",
    )
    batch_size: int = 1000
    clickhouse_flush_s: float = Field(
        default=1.0,
        ge=0,
        description="the analytics flow writes ClickHouse at most this long after an item "
        "arrives (one insert per table per interval; 0: one per batch)",
    )
    postgres_flush_s: float = Field(
        default=0.5,
        ge=0,
        description="the counts and fanout flows write post_like_counts and notifications "
        "at most this long after an item arrives (one transaction per process per "
        "interval; 0: one per batch); Redis counts: redis_flush_s",
    )
    redis_flush_s: float = Field(
        default=0.05,
        ge=0,
        description="the counts flow writes Redis counts at most this long after they "
        "arrive (one pipeline per process per interval, off its main loop, a post's "
        "updates of the interval collapsed to its newest; always before the epoch's "
        "snapshot; 0: per batch, on the main loop)",
    )
    topic_flush_s: float = Field(
        default=0.2,
        ge=0,
        description="the counts flow produces hot-post changes (likes.hot_posts, "
        "likes.hot_episodes) at most this long after they arrive, and waits for the "
        "broker's acknowledgement off its main loop (always before the epoch's snapshot; "
        "0: per batch, waiting for each)",
    )
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
    notify_min_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="at most one notification update per (recipient, post) this often",
    )
    recent_likers: int = Field(default=20, ge=1, description="length of likes:recent:{post}")
    recent_margin: int = Field(
        default=20,
        ge=0,
        description="likers kept beyond recent_likers per post, so unlikes rarely empty it",
    )
    recent_idle_s: int = Field(
        default=24 * 3600,
        gt=0,
        description="a post idle this long (event time) keeps only its seq in flow state",
    )
    reader: tuple[int, int] | None = Field(
        default=None,
        description="(this process's index, the flow's process count) when each process "
        "runs one Bytewax worker: the process reads only the Kafka partitions whose stages "
        "run in it (flows.routing); set by the flow runner, not the environment",
    )
    start_offsets: dict[str, dict[int, int]] = Field(
        default_factory=dict,
        description="{topic: {partition: offset}} where a flow without recovery state "
        "starts (else the beginning); set from a fresh store's start-offsets.json, "
        "written by `likes flows-reset`",
    )

    def recovery_path(self, flow: str) -> Path:
        """Where flow ``flow`` keeps its Bytewax recovery partitions."""
        return (self.recovery_dir or self.home / "recovery") / flow

    def edge_store_path(self, flow: str) -> Path | None:
        """Where flow ``flow`` keeps its dedupe maps (inside its recovery store, so they
        are lost, reset and backed up with it), or None: in the snapshots."""
        return self.recovery_path(flow) / "edges" if self.edge_store else None
