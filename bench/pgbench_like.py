"""pgbench running the API's own like statement (``ingest_api.likes_tx.LIKE_SQL``).

How the API runs it: ``set_like`` executes ``LIKE_SQL`` as one statement on a pooled
connection in autocommit mode (``ingest_api.db.make_pool``), so the edge upsert, the
outbox row and the idempotency completion are one statement, one transaction, one
commit and one round trip. pgbench runs each statement of a script without ``BEGIN``
as its own autocommit transaction, so the script is that one statement, prepared
(``-M prepared``) as psycopg prepares repeated statements.

Only the statement's parameters become pgbench variables, with the values of a like
without Idempotency-Key (as wrk sends it): a random registered post (or the hot post
with a given share) and a random fresh user; the event id, which the API makes in
Python, is one ``gen_random_uuid()`` per transaction; the edge's ``key_hash``, which the
API hashes in Python, is the SQL function that agrees with it
(``likes_edge_key_hash``, migration 009: about 8 µs of Postgres CPU per transaction,
which pgbench pays and the API does not). Not run here: ``set_like``'s
second statement (``CURRENT_SQL``), only taken when a concurrent request moved the same
edge, which fresh random users make rare.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.stats import pct
from core.settings import CommonSettings
from devstack.local_servers import PG_BIN
from ingest_api.likes_tx import LIKE_SQL

PGBENCH = PG_BIN / "pgbench"
_PARAMS = {
    "%(post_id)s": ":post",
    "%(user_id)s": ":usr",
    "%(event_id)s": "(SELECT eid FROM bench_ids)",
    "%(edge_key)s": "(:post::text || ':' || :usr::text)",
    "%(key_hash)s": "likes_edge_key_hash(:post, :usr)",
    "%(idem)s": "NULL",
    "%(token)s": "NULL",
    "%(action)s": "'LikeCreated'",
    "%(state)s": "'liked'",
    "%(liked)s": "true",
}


def _escape_colons(m: re.Match[str]) -> str:
    # pgbench takes ":MI" inside a string literal for a variable: spell the colons of
    # constant literals as escapes (the same constant for Postgres, parsed once).
    lit = m.group(0)
    return "E" + lit.replace(":", "\\x3A") if re.search(r":\w", lit) else lit


def like_statement() -> str:
    """``LIKE_SQL`` with its parameters as pgbench variables."""
    sql = LIKE_SQL.strip()
    if not sql.startswith("WITH "):
        raise RuntimeError("LIKE_SQL no longer starts with WITH: revisit bench/pgbench_like.py")
    sql = "WITH bench_ids AS (SELECT gen_random_uuid() AS eid),\n" + sql.removeprefix("WITH ")
    sql = re.sub(r"'[^']*'", _escape_colons, sql)
    for k, v in _PARAMS.items():
        sql = sql.replace(k, v)
    left = re.findall(r"%\(\w+\)s", sql)
    if left:
        raise RuntimeError(f"LIKE_SQL has parameters bench does not know: {left}")
    return sql


def like_script(hot_permille: int = 0) -> str:
    """The pgbench script: pick the post and user, then the like statement."""
    if hot_permille:
        post = (
            f"\\set post CASE WHEN random(1, 1000) <= {hot_permille} THEN :hot "
            "ELSE :pbase + random(1, :nposts) END"
        )
    else:
        post = "\\set post :pbase + random(1, :nposts)"
    return f"{post}\n\\set usr :ubase + random(1, :nusers)\n{like_statement()};\n"


@dataclass(frozen=True)
class PgbenchLoad:
    """Which posts and users the transactions pick, and how hard pgbench pushes."""

    pbase: int
    nposts: int
    ubase: int
    nusers: int
    clients: int
    hot: int | None = None
    hot_permille: int = 0


@dataclass(frozen=True)
class PgbenchResult:
    """What one pgbench run measured (latencies from its per-transaction log)."""

    tps: float
    transactions: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


def _conn_args() -> tuple[list[str], dict[str, str]]:
    u = urlsplit(CommonSettings().postgres_url)
    args = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or ""]
    env = dict(os.environ, PGPASSWORD=u.password or "", PGDATABASE=u.path.lstrip("/"))
    return args, env


def _command(load: PgbenchLoad, script: Path, logs: Path, seconds: float) -> list[str]:
    cmd = [str(PGBENCH), "-n", "-M", "prepared", "-c", str(load.clients), "-j", "2"]
    cmd += ["-T", str(max(1, round(seconds))), "-f", str(script)]
    for var, val in (
        ("pbase", load.pbase),
        ("nposts", load.nposts),
        ("ubase", load.ubase),
        ("nusers", load.nusers),
        ("hot", load.hot or 0),
    ):
        cmd += ["-D", f"{var}={val}"]
    return [*cmd, "-l", "--log-prefix", str(logs)]


def _latencies_ms(tmp: Path, throttled: bool) -> list[float]:
    """Per-transaction latency; when throttled, counted from the scheduled start."""
    lat = []
    for path in tmp.glob("log*"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) < 6 or parts[2] in ("skipped", "failed"):
                continue
            lag = int(parts[6]) if throttled and len(parts) > 6 else 0
            lat.append((int(parts[2]) + lag) / 1000)
    return lat


def _summary(out: str, lat: list[float]) -> PgbenchResult:
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    n = re.search(r"number of transactions actually processed: (\d+)", out)
    f = re.search(r"number of failed transactions: (\d+)", out)
    return PgbenchResult(
        tps=float(m.group(1)) if m else 0.0,
        transactions=int(n.group(1)) if n else len(lat),
        failed=int(f.group(1)) if f else 0,
        p50_ms=pct(lat, 50),
        p99_ms=pct(lat, 99),
        mean_ms=sum(lat) / len(lat) if lat else None,
    )


def run_pgbench(load: PgbenchLoad, seconds: float, rate: float | None = None) -> PgbenchResult:
    """Run the like transaction for ``seconds``; throttled to ``rate`` (open loop) if given."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-pgbench-"))
    try:
        script = tmp / "like.sql"
        script.write_text(like_script(load.hot_permille if load.hot else 0))
        conn, env = _conn_args()
        cmd = [*_command(load, script, tmp / "log", seconds), *conn]
        if rate:
            cmd[1:1] = ["-R", f"{rate:.1f}"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
        out = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed ({done.returncode}): {out[-3000:]}")
        return _summary(out, _latencies_ms(tmp, bool(rate)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
