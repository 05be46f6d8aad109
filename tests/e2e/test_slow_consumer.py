"""Slow optional consumers do not delay counts (the seed's "prioritize critical consumers").

Against the live stack, no mocks: while a workload runs through the API, the live
analytics flow's ClickHouse writes are made 10 times slower, then failing, for a minute
in all, through the ClickHouse sink's test hook (the fault file ``sinks.faults`` reads).
Meanwhile probe likes on fresh posts measure Redis count freshness, from the API's
acknowledgement (the commit came before it) to the first poll of ``likes:count:{post}``
that shows the like: its p99 stays within a second. The counts flow's own
``likes_freshness_seconds`` histogram (outbox commit to Redis) is reported beside it.
Afterwards ClickHouse catches up exactly: every projection equals the edge store,
``like_events`` holds one row per transition, and the hot episode of the viral post
reached ``hot_posts`` through the counts flow's episode topic.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from core.settings import CommonSettings, FlowSettings
from flows.metrics import metrics_port
from flows.runner import FLOWS
from ops.analytics import query
from ops.flow_status import end_offsets, flow_lag
from schemas.redis_keys import count_key
from sinks.faults import fault_file
from tests.conftest import auth, fresh_id
from tests.e2e.pipeline import converge, drive, new_posts
from tests.waiting import flow_caught_up

pytestmark = pytest.mark.e2e

SLOW = {"slowdown": 10}  # every ClickHouse write takes 10 times as long
FAILING = {"fail": True}  # every ClickHouse write fails (a transient error, retried)
PHASE_S = 30.0  # each fault lasts this long: a minute in all
BASELINE_S = 15.0
PROBE_EVERY_S = 0.2
POLL_S = 0.005
PROBE_GIVE_UP_S = 15.0
FRESH_P99_S = 1.0
LOAD_RATE = 150.0  # operations per second: a steady workload, well below saturation


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


@dataclass
class Prober:
    """Probe likes, one at a time, each on a fresh user, timed until Redis shows them."""

    s: CommonSettings
    posts: list[int]
    seconds: list[float] = field(default_factory=list)
    expected: dict[int, int] = field(default_factory=dict)

    def probe(self, http: httpx.Client, r: redis.Redis, post: int) -> None:
        resp = http.post(f"/v1/posts/{post}/like", headers=auth(self.s, fresh_id()))
        acked = time.monotonic()
        assert resp.status_code == 200 and resp.json()["changed"], resp.text
        want = self.expected[post] = self.expected.get(post, 0) + 1
        while int(r.get(count_key(post)) or 0) < want:
            if time.monotonic() - acked > PROBE_GIVE_UP_S:
                break
            time.sleep(POLL_S)
        self.seconds.append(time.monotonic() - acked)

    def run_for(self, seconds: float) -> list[float]:
        """Probe for ``seconds``; the freshness of each probe made meanwhile."""
        start = len(self.seconds)
        r = redis.Redis.from_url(self.s.redis_url)
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=self.s.api_url, timeout=30) as http:
            i = 0
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                self.probe(http, r, self.posts[i % len(self.posts)])
                i += 1
                time.sleep(max(0.0, PROBE_EVERY_S - (time.monotonic() - t0)))
        return self.seconds[start:]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(s: CommonSettings, flow: str) -> Samples:
    url = f"http://127.0.0.1:{metrics_port(s.flow_metrics_port_base, FLOWS, flow, 0)}/metrics"
    text = httpx.get(url, timeout=10).text
    return {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for fam in text_string_to_metric_families(text)
        for x in fam.samples
    }


def _histogram_p99(before: Samples, after: Samples) -> float | None:
    """The upper bound of the bucket holding the p99 of ``likes_freshness_seconds``
    samples observed between two scrapes."""
    buckets = sorted(
        (float(dict(labels)["le"]), after[(name, labels)] - before.get((name, labels), 0.0))
        for name, labels in after
        if name == "likes_freshness_seconds_bucket"
    )
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, n in buckets if total and n >= 0.99 * total), None)


@contextmanager
def clickhouse_fault(s: CommonSettings) -> Iterator[Path]:
    """The fault file of the live ClickHouse sinks, removed whatever happens."""
    path = fault_file(s.home, "clickhouse")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _background_load(s: CommonSettings, posts: list[int], stop: threading.Event) -> None:
    """About ``LOAD_RATE`` operations a second through the API (30 % on ``posts[0]``,
    which becomes hot), in chunks, until ``stop``."""
    chunk = int(LOAD_RATE)
    while not stop.is_set():
        t0 = time.monotonic()
        drive(s, posts, chunk, viral_share=0.3, unlike_share=0.2, concurrency=4)
        stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))


def _rows_and_transitions(s: CommonSettings, posts: list[int]) -> bool:
    """``like_events`` holds one row per edge transition of ``posts`` (the edge store's
    ``sum(version)``), no more, no less."""
    with psycopg.connect(s.postgres_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(version), 0) FROM post_likes WHERE post_id = ANY(%s)", (posts,)
        ).fetchone()
    _, rows = query(s, f"SELECT count() FROM likes.like_events WHERE post_id IN {tuple(posts)}")
    return row is not None and int(rows[0][0]) == int(row[0])


def _mean_write_s(before: Samples, after: Samples, sink: str = "clickhouse_like_events") -> float:
    """Mean seconds per batch the sink took between two scrapes of its flow."""
    label = (("sink", sink),)
    n = after.get(("likes_sink_write_seconds_count", label), 0.0) - before.get(
        ("likes_sink_write_seconds_count", label), 0.0
    )
    total = after.get(("likes_sink_write_seconds_sum", label), 0.0) - before.get(
        ("likes_sink_write_seconds_sum", label), 0.0
    )
    return total / n if n else 0.0


def _retries(samples: Samples) -> float:
    """Retried ClickHouse write errors, over the three ClickHouse sinks (a failing store
    blocks whichever of them the flow is writing when it starts failing)."""
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "likes_sink_retries_total"
        and dict(labels).get("sink", "").startswith("clickhouse")
    )


@dataclass
class Run:
    """What the run measured: probe freshness per phase, scrapes, lag at the end."""

    baseline: list[float]
    during: list[float]
    counts: tuple[Samples, Samples]
    analytics: tuple[Samples, Samples, Samples, Samples]  # start, fault, fail, end
    lag: dict[str, int]

    def figures(self) -> dict[str, object]:
        a0, a1, a2, _ = self.analytics
        return {
            "baseline_p99_s": round(p99(self.baseline), 3),
            "fault_p99_s": round(p99(self.during), 3),
            "fault_p50_s": round(sorted(self.during)[len(self.during) // 2], 3),
            "fault_max_s": round(max(self.during), 3),
            "fault_probes": len(self.during),
            "counts_histogram_p99_le_s": _histogram_p99(*self.counts),
            "clickhouse_write_mean_s_before": round(_mean_write_s(a0, a1), 4),
            "clickhouse_write_mean_s_slow": round(_mean_write_s(a1, a2), 4),
            "lag_at_fault_end": self.lag,
        }


def _run(s: CommonSettings, prober: Prober) -> Run:
    """A baseline, then a minute of faults, probing all along (the load runs meanwhile).
    The baseline starts once the analytics flow has caught up: a flow just restarted
    (``make up``) replays its last epoch in large writes, which would make the baseline's
    writes look as slow as the slowed ones (a cold run measured 0.21 s before, 0.11 s
    slowed; warm, 0.009 s and 0.12 s)."""
    flow_caught_up(s, "analytics", slack=int(LOAD_RATE) * 2, moving=True)
    prober.run_for(5.0)  # a few ordinary writes after the catch-up's last
    a0 = _samples(s, "analytics")
    baseline = prober.run_for(BASELINE_S)
    c1, a1 = _samples(s, "counts"), _samples(s, "analytics")
    with clickhouse_fault(s) as path:
        path.write_text(json.dumps(SLOW))
        during = prober.run_for(PHASE_S)
        a2 = _samples(s, "analytics")
        path.write_text(json.dumps(FAILING))
        during += prober.run_for(PHASE_S)
        ends = end_offsets(s.kafka_bootstrap, s.events_topic)
        lag = {f: flow_lag(s, f, ends)["lag"] for f in ("counts", "analytics")}
    c3, a3 = _samples(s, "counts"), _samples(s, "analytics")
    return Run(baseline, during, (c1, c3), (a0, a1, a2, a3), lag)


def test_a_slow_or_failing_clickhouse_does_not_delay_counts(stack: CommonSettings) -> None:
    posts, probe_posts = new_posts(stack, 80), new_posts(stack, 5)
    stop = threading.Event()
    load = threading.Thread(target=_background_load, args=(stack, posts, stop), daemon=True)
    load.start()
    try:
        run = _run(stack, Prober(stack, probe_posts))
    finally:
        stop.set()
        load.join(timeout=120)
    figures = run.figures()
    print(f"\nslow-consumer figures: {json.dumps(figures)}")
    assert p99(run.during) <= FRESH_P99_S, figures

    # the faults really hit the live analytics flow's ClickHouse writes
    a0, a1, a2, a3 = run.analytics
    assert _mean_write_s(a1, a2) >= 3 * _mean_write_s(a0, a1) > 0, figures
    assert _retries(a3) > _retries(a2), "no ClickHouse write failed: the fault was not live"
    assert run.lag["analytics"] > run.lag["counts"], figures

    # afterwards ClickHouse catches up exactly
    report = converge(stack, posts + probe_posts, timeout=300)
    assert report.clean, report.summary()
    _wait("like_events to hold every transition", lambda: _rows_and_transitions(stack, posts))
    threshold = FlowSettings().hot_threshold
    sql = f"SELECT max(peak_rate) FROM likes.hot_posts WHERE post_id = {posts[0]}"
    _wait("the viral post's hot episode in ClickHouse", lambda: _peak(stack, sql) >= threshold)


def _peak(s: CommonSettings, sql: str) -> int:
    _, rows = query(s, sql)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _wait(what: str, done: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)
