"""Shared helpers: results, percentiles, CPU accounting, ids, tokens, isolated stores."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.settings import REPO_ROOT, CommonSettings

RESULTS_DIR = REPO_ROOT / "bench" / "results"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    """Progress on stderr, timestamped."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ results


@dataclass
class Metric:
    """One row of RESULTS.md: our figure, the machine's limit measured beside it, the ratio."""

    label: str
    ours: float | None
    limit: float | None
    unit: str
    ratio: float | None
    goal: str
    met: bool | None
    ours_text: str = ""
    limit_text: str = ""
    note: str = ""


@dataclass
class Result:
    """What one benchmark writes to ``bench/results/<name>.json``."""

    name: str
    quick: bool
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    absolute: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def met(self) -> bool | None:
        vals = [m.met for m in self.metrics]
        if self.error or not vals or any(v is None for v in vals):
            return None if not self.error else False
        return all(vals)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        return d


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def pct(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def results_dir(quick: bool) -> Path:
    """Full runs write ``bench/results``; ``--quick`` smoke runs ``bench/results/quick``."""
    d = RESULTS_DIR / "quick" if quick else RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_result(r: Result) -> Path:
    path = results_dir(r.quick) / f"{r.name}.json"
    path.write_text(json.dumps(r.to_json(), indent=2, default=str) + "\n")
    return path


def render_markdown(quick: bool, order: list[str]) -> Path:
    """RESULTS.md from every ``<name>.json`` present (so ``--only`` updates one row)."""
    d = results_dir(quick)
    rows = []
    found = {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")}
    names = [n for n in order if n in found] + sorted(n for n in found if n not in order)
    lines = [
        "# likestream benchmark results" + (" (quick smoke run)" if quick else ""),
        "",
        "Machine: 2 shared, noisy cores; the whole local stack (Postgres, Redis, Kafka, "
        "Connect, API, flow) runs on them. Every figure is set against the machine's own "
        "limit measured side by side in the same run; the ratio is ours / limit.",
        "",
        "| benchmark | ours | machine limit (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        r = found[n]
        date = r.get("date", "")
        if r.get("error"):
            lines.append(f"| {n} | ERROR: {r['error'][:120]} | | | | no |")
            continue
        for m in r["metrics"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[m["met"]]
            ratio_s = "n/a" if m["ratio"] is None else f"{m['ratio']:.2f}×"
            label = n if m["label"] == n else f"{n}: {m['label']}"
            rows.append(n)
            lines.append(
                f"| {label} | {m['ours_text']} | {m['limit_text']} | {ratio_s} | {m['goal']} "
                f"| {met} |"
            )
        del date
    lines.append("")
    lines.append("Dates and full configuration, absolute numbers and notes: `<name>.json`.")
    for n in names:
        r = found[n]
        notes = r.get("notes") or []
        if notes:
            lines.append("")
            lines.append(f"**{n}** ({r.get('date', '')}, {r.get('seconds', 0):.0f} s):")
            lines.extend(f"- {x}" for x in notes)
    path = d / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------- CPU accounting


def _proc_cpu(pid: int) -> tuple[float, float, str, int] | None:
    """(own cpu s, reaped children cpu s, comm, ppid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()
    own = (int(f[11]) + int(f[12])) / _CLK_TCK
    kids = (int(f[13]) + int(f[14])) / _CLK_TCK
    return own, kids, comm, int(f[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("replace")
    except OSError:
        return ""


def _category(comm: str, cmd: str) -> str:
    if comm.startswith("postgres") or "postgres" in cmd.split(" ")[0]:
        return "postgres"
    if comm.startswith("redis"):
        return "redis"
    if "kafka.Kafka" in cmd:
        return "kafka"
    if "ConnectStandalone" in cmd:
        return "connect"
    if "likes api" in cmd:
        return "api"
    if "likes flow" in cmd:
        return "flow-counts(live)"
    if comm == "wrk":
        return "wrk"
    if comm == "pgbench":
        return "pgbench"
    if "bench." in cmd or "bench/" in cmd:
        return "bench"
    return "other"


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds used so far per component, including exited postgres backends."""
    out: dict[str, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        info = _proc_cpu(pid)
        if info is None:
            continue
        own, kids, comm, ppid = info
        cat = _category(comm, _cmdline(pid))
        out[cat] = out.get(cat, 0.0) + own
        if cat == "postgres":
            # the postmaster reaps its backends: exited ones land in its children times
            out[cat] += kids
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = [int(x) / _CLK_TCK for x in parts]
        out["_machine_busy"] = sum(vals) - vals[3] - vals[4]
        out["_machine_total"] = sum(vals)
    except OSError:
        pass
    return out


def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b.get(k, 0.0) - a.get(k, 0.0), 3) for k in sorted(set(a) | set(b))}


def cpu_per_op(delta: dict[str, float], ops: float) -> dict[str, float]:
    """Microseconds of CPU per operation, per component (components above 1 % only)."""
    if not ops:
        return {}
    total = max(delta.get("_machine_busy", 0.0), 1e-9)
    return {
        k: round(v / ops * 1e6, 1)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        if not k.startswith("_") and v / total > 0.01
    }


# ------------------------------------------------------------------ ids etc.


def settings() -> CommonSettings:
    return CommonSettings()


def secret() -> str:
    return settings().jwt_secret.get_secret_value()


def id_base(span: int = 10**6) -> int:
    """A random base for a fresh range of ``span`` ids, below 2**53 (Lua-safe) and unused."""
    return random.SystemRandom().randrange(10**12, 9 * 10**14) // span * span


def make_tokens(user_ids: list[int], ttl_s: int = 7200) -> list[str]:
    from ingest_api.auth import issue_token

    key = secret()
    return [issue_token(key, u, ttl_s=ttl_s) for u in user_ids]


def register_posts(posts: list[int], author: int) -> None:
    """Register ``posts`` through the API (as clients do), checking every answer."""
    import httpx

    from ingest_api.auth import issue_token

    s = settings()
    headers = {"Authorization": f"Bearer {issue_token(secret(), author, scope='posts:write')}"}

    async def go() -> None:
        async with httpx.AsyncClient(base_url=s.api_url, timeout=30) as c:
            for i in range(0, len(posts), 50):
                rs = await asyncio.gather(
                    *[
                        c.put(f"/v1/posts/{p}", json={"author_id": author}, headers=headers)
                        for p in posts[i : i + 50]
                    ]
                )
                bad = [r for r in rs if r.status_code not in (200, 201)]
                if bad:
                    raise RuntimeError(
                        f"post registration failed: {bad[0].status_code} {bad[0].text}"
                    )

    asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------- kafka topics


def admin() -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": settings().kafka_bootstrap})


def create_topic(name: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    fs = admin().create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1,
                  config={"retention.ms": str(6 * 3600 * 1000)})],
        operation_timeout=30,
    )  # fmt: skip
    for f in fs.values():
        f.result()
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin().list_topics(name, timeout=10).topics.get(name)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {name} did not appear")


def delete_topics(names: list[str]) -> None:
    names = [n for n in names if n]
    if not names:
        return
    existing = set(admin().list_topics(timeout=10).topics)
    todo = [n for n in names if n in existing]
    if not todo:
        return
    for name, f in admin().delete_topics(todo, operation_timeout=30).items():
        try:
            f.result()
        except Exception as e:
            log(f"could not delete topic {name}: {e}")


def topics_matching(fragment: str) -> list[str]:
    return [t for t in admin().list_topics(timeout=10).topics if fragment in t]


def delete_groups(groups: list[str]) -> None:
    if not groups:
        return
    try:
        for g, f in admin().delete_consumer_groups(groups, request_timeout=15).items():
            try:
                f.result()
            except Exception as e:
                if "GROUP_ID_NOT_FOUND" not in str(e):
                    log(f"could not delete consumer group {g}: {e}")
    except Exception as e:
        log(f"could not delete consumer groups {groups}: {e}")


def topic_size(name: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings().kafka_bootstrap, "group.id": "bench-size"})
    try:
        md = c.list_topics(name, timeout=10).topics[name]
        total = 0
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            total += hi - lo
        return total
    finally:
        c.close()


# ------------------------------------------------- isolated Redis db / PG schema


@contextmanager
def isolated_redis_db() -> Iterator[str]:
    """A Redis URL on the stack's server but an empty logical db; its keys removed after."""
    import redis

    base = settings().redis_url.rsplit("/", 1)[0]
    for db in range(15, 0, -1):
        r = redis.Redis.from_url(f"{base}/{db}")
        if r.dbsize() == 0 and r.set("bench:lock", str(os.getpid()), nx=True, ex=3600):
            break
    else:
        raise RuntimeError("no empty Redis logical database for the benchmark")
    url = f"{base}/{db}"
    try:
        yield url
    finally:
        clear_redis(url)
        r.delete("bench:lock")
        r.close()


def clear_redis(url: str) -> None:
    """Delete every key of the benchmark's own logical db (it was empty when taken)."""
    import redis

    r = redis.Redis.from_url(url)
    batch = []
    for k in r.scan_iter(count=5000):
        if k == b"bench:lock":
            continue
        batch.append(k)
        if len(batch) >= 5000:
            r.delete(*batch)
            batch.clear()
    if batch:
        r.delete(*batch)
    r.close()


@contextmanager
def isolated_pg_schema() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh schema with its own post_like_counts."""
    import psycopg

    s = settings()
    schema = f"bench_{os.getpid()}_{random.randrange(10**6)}"
    with psycopg.connect(s.postgres_url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(
            f"CREATE TABLE {schema}.post_like_counts (LIKE public.post_like_counts INCLUDING ALL)"
        )
    sep = "&" if "?" in s.postgres_url else "?"
    url = f"{s.postgres_url}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with psycopg.connect(s.postgres_url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def truncate_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("TRUNCATE post_like_counts")


def stack_pids() -> dict[str, int | None]:
    from ops import stack

    return stack.running(settings())


def wait_for(pred: Any, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def env_for_child(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = str(REPO_ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.update(extra or {})
    return env
