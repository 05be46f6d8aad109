"""Shared helpers: results, percentiles, CPU accounting, ids, tokens, isolated stores."""

from __future__ import annotations

import asyncio
import json
import math
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

from core.settings import REPO_ROOT, CommonSettings

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
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
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
    found = {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")}
    names = [n for n in order if n in found] + sorted(n for n in found if n not in order)
    dates = sorted(r.get("date", "") for r in found.values())
    lines = [
        "# likestream benchmark results" + (" (quick smoke run)" if quick else ""),
        "",
        f"Runs: {dates[0] if dates else '?'} to {dates[-1] if dates else '?'} (UTC). Machine: 2 "
        "shared, noisy cores; the whole local stack (Postgres, Redis, Kafka, Connect, API, "
        "flows) runs on them, and other work may too (see the notes). Every figure is set "
        "against the machine's own limit measured side by side in the same run.",
        "",
        "Ratio = ours / limit: for rates higher is better; for latencies and bytes lower is "
        "better; `hot_post` is hot / uniform, `two_processes` is our 2p/1p speed-up over the "
        "raw 2p/1p speed-up. The goal is checked on the figure it names.",
        "",
        *(
            [
                "Smoke run (`--quick`): 10x smaller topics and 3-4x shorter phases; the flow "
                "figures are dominated by start-up and say little. Use the full run's numbers.",
                "",
            ]
            if quick
            else []
        ),
        "| benchmark | ours | machine limit (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        r = found[n]
        if r.get("error"):
            err = " ".join(r["error"].split())[:160].replace("|", "/")
            lines.append(f"| {n} | ERROR: {err} | | | | **no** |")
            continue
        for m in r["metrics"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[m["met"]]
            ratio_s = "n/a" if m["ratio"] is None else f"{m['ratio']:.2f}x"
            label = n if m["label"] == n else f"{n}: {m['label']}"
            cells = [label, m["ours_text"], m["limit_text"], ratio_s, m["goal"], met]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    lines.append("Full configuration, absolute numbers and CPU accounting: `<name>.json`.")
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
    """(own cpu s, reaped children cpu s, comm, start time in ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()
    own = (int(f[11]) + int(f[12])) / _CLK_TCK
    kids = (int(f[13]) + int(f[14])) / _CLK_TCK
    return own, kids, comm, int(f[19])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _category(comm: str, cmd: str) -> str:
    if comm.startswith("postgres") or cmd.startswith("postgres"):
        return "postgres"
    if comm.startswith("redis"):
        return "redis"
    if "kafka.Kafka" in cmd:
        return "kafka"
    if "ConnectStandalone" in cmd:
        return "connect"
    if "likes api" in cmd:
        return "api"
    if "likes flow " in cmd:
        name = cmd.split("likes flow ", 1)[1].split(" ")[0]
        return f"flow-{name}(live)"
    if comm == "wrk":
        return "wrk"
    if comm == "pgbench":
        return "pgbench"
    if "bench." in cmd or "/bench/" in cmd:
        return "bench"
    return "other"


Snapshot = dict[tuple[int, int], tuple[str, float, float]]


def cpu_snapshot() -> dict[str, Any]:
    """CPU seconds used so far per process (pid, start time), with its component."""
    procs: Snapshot = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        info = _proc_cpu(pid)
        if info is None:
            continue
        own, kids, comm, start = info
        procs[(pid, start)] = (_category(comm, _cmdline(pid)), own, kids)
    machine: dict[str, float] = {}
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = [int(x) / _CLK_TCK for x in parts]
        machine = {"busy": sum(vals) - vals[3] - vals[4], "total": sum(vals)}
    except OSError:
        pass
    return {"procs": procs, "machine": machine, "children": _children_cpu(), "wall": time.time()}


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_delta(a: dict[str, Any], b: dict[str, Any], tool: str | None = None) -> dict[str, float]:
    """CPU seconds per component between two snapshots.

    Processes alive in both count their difference, processes started in between count in
    full; postgres backends that exited in between are found in the postmaster's reaped
    children time. ``tool``: the name under which this process's reaped children (wrk,
    pgbench run to completion in between) are counted.
    """
    out: dict[str, float] = {}
    for key, (cat, own, kids) in b["procs"].items():
        before = a["procs"].get(key)
        d = own - (before[1] if before else 0.0)
        if cat == "postgres":
            d += kids - (before[2] if before else 0.0)
        out[cat] = out.get(cat, 0.0) + d
    if tool:
        out[tool] = out.get(tool, 0.0) + b["children"] - a["children"]
    ma, mb = a["machine"], b["machine"]
    if ma and mb:
        out["_machine_busy"] = mb["busy"] - ma["busy"]
        out["_machine_total"] = mb["total"] - ma["total"]
    return {k: round(v, 3) for k, v in sorted(out.items())}


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

    client = admin()  # keep the client alive until the futures resolve
    fs = client.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                config={"retention.ms": str(6 * 3600 * 1000)},
            )
        ],
        operation_timeout=30,
    )
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
    client = admin()
    existing = set(client.list_topics(timeout=10).topics)
    todo = [n for n in names if n in existing]
    if not todo:
        return
    for name, f in client.delete_topics(todo, operation_timeout=30).items():
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
        client = admin()
        for g, f in client.delete_consumer_groups(groups, request_timeout=15).items():
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

        def clean() -> None:
            clear_redis(url)
            redis.Redis.from_url(url).delete("bench:lock")

        retrying(f"keys of Redis db {db}", clean)
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
        retrying(f"drop schema {schema}", lambda: _drop_schema(schema))


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(settings().postgres_url, autocommit=True, connect_timeout=5) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


LEFTOVERS: list[str] = []


def retrying(what: str, fn: Any, budget_s: float = 120.0) -> bool:
    """Clean-up that survives a store restarting under us (others run fault tests)."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            fn()
            return True
        except Exception as e:
            if time.monotonic() > deadline:
                log(f"clean-up failed, left behind: {what}: {e}")
                LEFTOVERS.append(what)
                return False
            time.sleep(2.0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> list[str]:
    """Remove what an earlier, crashed bench process left (its pid is in every name)."""
    import re

    import psycopg

    removed: list[str] = []
    try:
        with psycopg.connect(settings().postgres_url, autocommit=True, connect_timeout=5) as c:
            for (name,) in c.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'"
            ).fetchall():
                m = re.match(r"bench_(\d+)_\d+$", name)
                if m and not _pid_alive(int(m.group(1))):
                    c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
                    removed.append(f"schema {name}")
    except Exception as e:
        log(f"could not sweep old bench schemas: {e}")
    try:
        dead = []
        for t in admin().list_topics(timeout=10).topics:
            m = re.match(r"bench\.\w+\.(\d+)\.", t) or re.search(r"bench-quix-(\d+)-", t)
            if m and not _pid_alive(int(m.group(1))):
                dead.append(t)
        delete_topics(dead)
        removed += [f"topic {t}" for t in dead]
    except Exception as e:
        log(f"could not sweep old bench topics: {e}")
    return removed


def wait_healthy(timeout: float = 180.0, need_flow: bool = False) -> dict[str, Any]:
    """Wait until the stack's own health checks pass (others' fault tests restart parts)."""
    from devstack.components import build_components

    wanted = {"postgres", "redis", "kafka", "api"} | (
        {"connect", "flow-counts"} if need_flow else set()
    )
    comps = [c for c in build_components(settings()) if c.name in wanted]
    t0 = time.monotonic()
    bad: list[str] = []
    while time.monotonic() - t0 < timeout:
        bad = []
        for c in comps:
            try:
                if not c.healthy():
                    bad.append(c.name)
            except Exception as e:
                bad.append(f"{c.name} ({type(e).__name__})")
        if not bad:
            waited = round(time.monotonic() - t0, 1)
            if waited > 1:
                log(f"stack healthy again after {waited}s")
            return {"healthy": True, "waited_s": waited}
        time.sleep(2.0)
    log(f"stack not healthy after {timeout:.0f}s: {bad}")
    return {"healthy": False, "waited_s": round(time.monotonic() - t0, 1), "unhealthy": bad}


def truncate_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("TRUNCATE post_like_counts")


def stack_pids() -> dict[str, int | None]:
    from devstack import stack

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


def live_lag() -> int | None:
    """Messages of the events topic not yet processed by the live flows (None if unknown)."""
    try:
        import redis

        from devstack.components import FLOW_NAMES
        from ops.flow_status import end_offsets
        from schemas.redis_keys import flow_progress_key

        s = settings()
        ends = end_offsets(s.kafka_bootstrap, s.events_topic)
        r = redis.Redis.from_url(s.redis_url, socket_timeout=2)
        lag = 0
        for name in FLOW_NAMES:
            done = {int(k): int(v) for k, v in r.hgetall(flow_progress_key(name)).items()}
            lag += sum(max(0, end - done.get(p, 0)) for p, end in ends.items())
        r.close()
        return lag
    except Exception:
        return None


def settle(timeout: float = 90.0, quiet_lag: int = 200) -> dict[str, Any]:
    """Wait until the live pipeline has drained what earlier load produced.

    Otherwise the CDC and flow processes still chewing on a backlog take CPU from the
    next measurement. Drained: the live flows' lag below ``quiet_lag`` twice in a row,
    one second apart (so CDC is not still publishing).
    """
    t0 = time.monotonic()
    calm = 0
    lag = None
    while time.monotonic() - t0 < timeout:
        lag = live_lag()
        calm = calm + 1 if lag is not None and lag <= quiet_lag else 0
        if calm >= 2:
            break
        time.sleep(1.0)
    waited = round(time.monotonic() - t0, 1)
    settled = calm >= 2
    if not settled:
        log(f"live pipeline still {lag} events behind after {waited}s; measuring anyway")
    return {"settled": settled, "waited_s": waited, "lag": lag}


def background(seconds: float = 1.0) -> dict[str, Any]:
    """What the machine is busy with before a benchmark starts (cores per component)."""
    a = cpu_snapshot()
    time.sleep(seconds)
    b = cpu_snapshot()
    d = cpu_delta(a, b)
    wall = b["wall"] - a["wall"]
    cores = {
        k: round(v / wall, 2) for k, v in d.items() if not k.startswith("_") and v / wall >= 0.03
    }
    busy = d.get("_machine_busy", 0.0) / max(d.get("_machine_total", 1e-9), 1e-9)
    return {"machine_busy": round(busy, 2), "cores": cores}
