"""Benchmark the feed batch read (``GET /v1/likes``, 100 posts) with and without the
in-process count cache (``ingest_api.counts.CountCache``).

Every feed holds the same viral post and 99 of 10,000 posts drawn Zipf-like, so popular
posts recur across feeds as they do in real ones. The counts live in an empty Redis db
of the benchmark's own (``bench.isolation``), under fresh post ids; the viewers follow
nobody and like nothing, so a read is counts plus viewer state, the part the cache
changes. Two API processes of the benchmark's own, ``count_cache_ttl_s`` 1 (the
default) and 0 (off), take the same ``wrk`` closed-loop load in turn, twice. Per phase:
reads/s, latency, the Redis keys read per request (``INFO`` keyspace hits + misses,
server-wide, so other clients add a little) and the cache's hit ratio from ``/metrics``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis

from bench.children import Child, free_port
from bench.context import Ctx
from bench.fixtures import id_base, make_tokens
from bench.isolation import isolated_redis_db
from bench.log import log
from bench.results import Metric, Result
from bench.stats import fmt, ratio
from bench.wrk import WrkResult, _parse, ensure_wrk
from core.settings import ApiSettings
from schemas.redis_keys import count_key

POSTS, BATCH, FEEDS, VIEWERS, CONNECTIONS = 10_000, 100, 2_000, 200, 16
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LUA = r"""
local paths, tokens = {}, {}
function init(args)
  for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
  for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
end
function request()
  return wrk.format("GET", paths[math.random(1, #paths)],
                    {["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)]})
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect_err": %%d, ' ..
    '"read_err": %%d, "write_err": %%d, "timeout": %%d, "lat_mean_us": %%f, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""
_CACHE_SERIES = re.compile(r'^likes_api_count_cache_total\{result="(\w+)"\} ([0-9.e+]+)$', re.M)


@dataclass(frozen=True)
class Phase:
    """One wrk run against one API process."""

    cache: bool
    rate: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    redis_keys_per_read: float
    api_cpu_ms_per_read: float
    cache_hit_ratio: float | None


def process_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` (on this machine) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@contextmanager
def serve_api(settings: ApiSettings, log_name: str) -> Iterator[tuple[str, int]]:
    """An API process of the benchmark's own with ``settings``: its base URL and PID."""
    port = free_port()
    settings = settings.model_copy(update={"api_port": port})
    args = ["uvicorn", "ingest_api.app:create_app", "--factory", "--port", str(port)]
    log_path = Path(tempfile.gettempdir()) / f"bench-{log_name}-{port}.log"
    kid = Child([*args, "--log-level", "warning", "--no-access-log"], log_path, settings)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or kid.proc.poll() is not None:
                raise RuntimeError(f"bench API did not start: {kid.log_tail()}")
            time.sleep(0.3)
        yield url, kid.proc.pid
    except BaseException:
        log(f"bench API log ({log_name}): {kid.log_tail()}")  # why it failed, if it did
        raise
    finally:
        kid.stop()
        log_path.unlink(missing_ok=True)


class Feeds:
    """Fresh posts with counts in Redis, feed paths and viewer tokens for wrk's script."""

    def __init__(self, redis_url: str) -> None:
        rng = random.Random(7)
        base = id_base()
        self.viral, posts = base + 1, [base + 2 + i for i in range(POSTS)]
        weights = [1 / (i + 1) for i in range(POSTS)]
        r = redis.Redis.from_url(redis_url)
        pipe = r.pipeline(transaction=False)
        pipe.set(count_key(self.viral), 1_000_000)
        for i, p in enumerate(posts):
            pipe.set(count_key(p), 50_000 // (i + 1))
        pipe.execute()
        r.close()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-read-batch-"))
        lines = []
        for _ in range(FEEDS):
            feed = [self.viral, *rng.choices(posts, weights, k=BATCH - 1)]
            lines.append("/v1/likes?post_ids=" + "%2C".join(map(str, feed)))
        (self.dir / "paths.txt").write_text("\n".join(lines) + "\n")
        viewers = [id_base() + 1 + i for i in range(VIEWERS)]
        (self.dir / "tokens.txt").write_text("\n".join(make_tokens(viewers)) + "\n")
        script = _LUA % {"paths": self.dir / "paths.txt", "tokens": self.dir / "tokens.txt"}
        self.script = self.dir / "read_batch.lua"
        self.script.write_text(script)

    def wrk(self, url: str, seconds: float) -> WrkResult:
        """``seconds`` of closed-loop batch reads over CONNECTIONS connections."""
        wrk = ensure_wrk()
        if wrk is None:
            raise RuntimeError("wrk is not available and could not be installed")
        cmd = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        done = subprocess.run(
            [*cmd, "-s", str(self.script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        return _parse(done.stdout, done.stderr)

    def cleanup(self) -> None:
        """Remove wrk's files."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _keyspace_reads(r: redis.Redis) -> int:
    stats = r.info("stats")
    return int(stats["keyspace_hits"]) + int(stats["keyspace_misses"])


def _hit_ratio(url: str) -> float | None:
    found = {k: float(v) for k, v in _CACHE_SERIES.findall(httpx.get(f"{url}/metrics").text)}
    total = found.get("hit", 0.0) + found.get("miss", 0.0)
    return found.get("hit", 0.0) / total if total else None


def _phase(feeds: Feeds, redis_url: str, cache: bool, warm_s: float, seconds: float) -> Phase:
    s = ApiSettings(redis_url=redis_url, count_cache_ttl_s=1.0 if cache else 0.0)
    r = redis.Redis.from_url(redis_url)
    with serve_api(s, "read-batch") as (url, pid):
        feeds.wrk(url, warm_s)
        keys0, cpu0 = _keyspace_reads(r), process_cpu_s(pid)
        w = feeds.wrk(url, seconds)
        keys, cpu = _keyspace_reads(r) - keys0, process_cpu_s(pid) - cpu0
        hits = _hit_ratio(url) if cache else None
    r.close()
    n = max(1, w.requests)
    log(f"batch reads, cache {'on' if cache else 'off'}: {w.rate:.0f}/s p99 {w.p99_ms} ms")
    return Phase(cache, w.rate, w.p50_ms, w.p99_ms, w.non2xx, keys / n, cpu / n * 1000, hits)


def _mean(phases: list[Phase], attr: str) -> float:
    return sum(float(getattr(p, attr)) for p in phases) / len(phases)


def _text(phases: list[Phase], rate: float) -> str:
    return (
        f"{rate:,.0f} reads/s (p99 {fmt(_mean(phases, 'p99_ms'))} ms), "
        f"{_mean(phases, 'redis_keys_per_read'):.1f} Redis keys and "
        f"{_mean(phases, 'api_cpu_ms_per_read'):.2f} ms API CPU per read"
    )


def _metric(on: list[Phase], off: list[Phase]) -> Metric:
    rate_on, rate_off = _mean(on, "rate"), _mean(off, "rate")
    r = ratio(rate_on, rate_off)
    return Metric(
        label="batch reads/s with the count cache",
        ours=rate_on,
        limit=rate_off,
        unit="reads/s",
        ratio=r,
        goal="≥ 1.0x without it",
        met=r is not None and r >= 1.0,
        ours_text=_text(on, rate_on),
        limit_text="cache off: " + _text(off, rate_off),
    )


def bench_read_batch(ctx: Ctx) -> Result:
    """Feed batch reads/s with the in-process count cache against without it."""
    res = Result("read_batch", ctx.quick)
    warm, secs, rounds = (2.0, 5.0, 1) if ctx.quick else (3.0, 15.0, 2)
    res.config = {
        "posts": POSTS,
        "batch": f"{BATCH} ids: the viral post + 99 drawn with weight 1/rank",
        "distinct_feeds": FEEDS,
        "viewers": VIEWERS,
        "load": f"wrk -t2 -c{CONNECTIONS}, {secs:.0f} s per phase after {warm:.0f} s warm-up",
        "order": "cache off, cache on; repeated" if rounds > 1 else "cache off, cache on",
    }
    with isolated_redis_db() as redis_url:
        feeds = Feeds(redis_url)
        try:
            phases = [
                _phase(feeds, redis_url, cache, warm, secs)
                for _ in range(rounds)
                for cache in (False, True)
            ]
        finally:
            feeds.cleanup()
    on, off = [p for p in phases if p.cache], [p for p in phases if not p.cache]
    res.absolute["phases"] = [asdict(p) for p in phases]
    res.metrics.append(_metric(on, off))
    res.notes.append(
        "Viewers follow nobody, so liked_by costs one index probe per read; counts are all "
        "in Redis. The API (one process) and wrk share the machine's 2 cores with the stack."
    )
    return res
