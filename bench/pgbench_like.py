"""pgbench running the API's own like transaction (``ingest_api.likes_tx.LIKE_SQL``).

The script is derived, when it runs, from ``LIKE_SQL`` and from how ``set_like`` runs it,
so it stays the same transaction when the API's SQL changes: the statement (edge upsert,
outbox insert, and whatever else ``LIKE_SQL`` does), inside ``BEGIN``/``COMMIT`` if
``set_like`` opens a transaction block, else as its own autocommit transaction as the
API does; a random post among the registered ones (or the hot post with a given share)
and a random user. Only the parameters become pgbench variables, with the values of a
like without Idempotency-Key; the event id, which the API makes in Python, is one
``gen_random_uuid()`` per transaction.
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

from bench.common import PGBENCH, pct, settings
from ingest_api.likes_tx import LIKE_SQL


def like_script(hot_permille: int = 0) -> str:
    """The pgbench script: LIKE_SQL with its parameters as pgbench variables."""
    sql = LIKE_SQL.strip()
    assert sql.startswith("WITH "), "LIKE_SQL shape changed: revisit bench/pgbench_like.py"
    sql = "WITH bench_ids AS (SELECT gen_random_uuid() AS eid),\n" + sql[len("WITH ") :]
    subs = {
        "%(post_id)s": ":post",
        "%(user_id)s": ":usr",
        "%(event_id)s": "(SELECT eid FROM bench_ids)",
        "%(edge_key)s": "(:post::text || ':' || :usr::text)",
        "%(idem)s": "NULL",
        "%(action)s": "'LikeCreated'",
        "%(state)s": "'liked'",
        "%(liked)s": "true",
    }
    for k, v in subs.items():
        sql = sql.replace(k, v)

    # pgbench takes ":MI" inside a string literal for a variable: spell the colons of
    # constant literals as escapes (the same constant for Postgres, parsed once).
    def esc(m: re.Match[str]) -> str:
        lit = m.group(0)
        return "E" + lit.replace(":", "\\x3A") if re.search(r":\w", lit) else lit

    sql = re.sub(r"'[^']*'", esc, sql)
    left = re.findall(r"%\(\w+\)s", sql)
    if left:
        raise RuntimeError(f"LIKE_SQL has parameters bench does not know: {left}")
    if hot_permille:
        post = (
            f"\\set post CASE WHEN random(1, 1000) <= {hot_permille} THEN :hot "
            "ELSE :pbase + random(1, :nposts) END"
        )
    else:
        post = "\\set post :pbase + random(1, :nposts)"
    body = f"BEGIN;\n{sql};\nCOMMIT;\n" if uses_transaction_block() else f"{sql};\n"
    return f"{post}\n\\set usr :ubase + random(1, :nusers)\n{body}"


def uses_transaction_block() -> bool:
    """Whether ``set_like`` wraps LIKE_SQL in ``conn.transaction()`` (else autocommit)."""
    import inspect

    from ingest_api import likes_tx

    return "transaction()" in inspect.getsource(likes_tx.set_like)


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    seconds: float
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    raw_tail: str


def _conn_args() -> tuple[list[str], dict[str, str]]:
    u = urlsplit(settings().postgres_url)
    args = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or ""]
    env = dict(os.environ, PGPASSWORD=u.password or "", PGDATABASE=u.path.lstrip("/"))
    return args, env


def run_pgbench(
    *,
    pbase: int,
    nposts: int,
    ubase: int,
    nusers: int,
    clients: int,
    seconds: float,
    hot: int | None = None,
    hot_permille: int = 0,
    rate: float | None = None,
    threads: int = 2,
) -> PgbenchResult:
    """Run the like transaction; latencies from the per-transaction log.

    With ``rate`` (throttled, open loop) a transaction's latency counts from its
    scheduled start (pgbench's schedule lag is added), like the API's open-loop figures.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-pgbench-"))
    try:
        script = tmp / "like.sql"
        script.write_text(like_script(hot_permille if hot else 0))
        conn, env = _conn_args()
        cmd = [
            PGBENCH,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(max(1, round(seconds))),
            "-f",
            str(script),
            "-D",
            f"pbase={pbase}",
            "-D",
            f"nposts={nposts}",
            "-D",
            f"ubase={ubase}",
            "-D",
            f"nusers={nusers}",
            "-D",
            f"hot={hot or 0}",
            "-l",
            "--log-prefix",
            str(tmp / "log"),
            *conn,
        ]
        if rate:
            cmd[1:1] = ["-R", f"{rate:.1f}"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
        out = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed ({done.returncode}): {out[-3000:]}")
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        n = re.search(r"number of transactions actually processed: (\d+)", out)
        f = re.search(r"number of failed transactions: (\d+)", out)
        lat: list[float] = []
        for path in tmp.glob("log*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) < 6 or parts[2] in ("skipped", "failed"):
                    continue
                us = int(parts[2]) + (int(parts[6]) if rate and len(parts) > 6 else 0)
                lat.append(us / 1000)
        return PgbenchResult(
            tps=float(m.group(1)) if m else 0.0,
            transactions=int(n.group(1)) if n else len(lat),
            seconds=seconds,
            failed=int(f.group(1)) if f else 0,
            p50_ms=pct(lat, 50),
            p99_ms=pct(lat, 99),
            mean_ms=sum(lat) / len(lat) if lat else None,
            raw_tail=out[-1500:],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
