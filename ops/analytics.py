"""``likes analytics query``: read-only SQL on ClickHouse, embedded or server, while the
system runs; and the correction rows ``likes reconcile`` writes.

Guarantee: an analyst's SQL reaches ClickHouse only through ``analytics.reader`` (a
statement allow-list, then a read-only connection of its own with time, memory and
result limits), so no query, however hostile, slow or malformed, can change what the
pipeline's writers see. With embedded chDB the analytics flow's process owns the store
and answers on ``127.0.0.1:<analytics_port>``; while it restarts, callers wait for it;
when the stack does not run it at all, the store is opened here.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import httpx

from analytics.reader import AnalystReader, QueryFailed
from analytics.server import REPAIR_COLUMNS
from analytics.sql_guard import QueryRefused
from core.settings import CommonSettings
from sinks import clickhouse_erasure, clickhouse_store
from sinks.base import DEFAULT_RETRY
from sinks.clickhouse_sinks import insert_retrying

log = logging.getLogger(__name__)
OWNER_WAIT_S = 90.0  # how long to wait for a restarting owner before giving up


def _owner_expected(s: CommonSettings) -> bool:
    """The stack's supervisor runs (or is restarting) the store's owner: the analytics
    flow (process 0 of it in the cluster profile)."""
    from devstack.supervisor import Supervisor

    sup = Supervisor(s)
    if not sup.reachable():
        return False
    for name in ("flow-analytics", "flow-analytics-0"):
        info = sup.info(name)
        if info is not None and info.get("statename") in ("STARTING", "RUNNING", "BACKOFF"):
            return True
    return False


def _owner(s: CommonSettings, path: str, body: Any, timeout: float) -> httpx.Response | None:
    """POST to the process that owns the embedded store; None when no owner runs (then
    the caller may open the store itself). While the supervisor runs the owner, wait for
    it (up to ``OWNER_WAIT_S``) instead: opening the store here would lock the owner out
    of it (chDB admits one process) for as long as this process lives.

    A request the owner took but never answered (it was restarted or ended meanwhile:
    the watchdog, ``likes flows-reset``, a crash) is sent again, the same request, once
    the owner is back: every route is safe to repeat (a query reads; correction rows
    carry their own ``part``, which the table's key collapses under ``FINAL``; an
    erasure of an erased user finds nothing left). An answer, whatever its status, is
    the caller's: a store that refuses a write for now is retried by the owner itself
    (``sinks.clickhouse_sinks.insert_retrying``)."""
    deadline = time.monotonic() + OWNER_WAIT_S
    url = f"http://127.0.0.1:{s.analytics_port}{path}"
    while True:
        try:
            return httpx.post(url, json=body, timeout=timeout)
        except httpx.ConnectError:
            if not _owner_expected(s):
                return None
            lost = "has not answered"
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            log.warning("the analytics flow dropped %s (%s); sending it again", path, e)
            lost = f"dropped the request ({type(e).__name__}) and has not answered since"
        if time.monotonic() > deadline:
            raise ValueError(
                f"the analytics flow owns the embedded ClickHouse store but {lost} on port "
                f"{s.analytics_port} for {OWNER_WAIT_S:.0f} s (see .local/log/flow-analytics.log)"
            ) from None
        time.sleep(0.5)


def _answer(r: httpx.Response) -> Any:
    """The owner's JSON answer; ``ValueError`` with its error (a JSON ``error``, or the
    text of an answer that is not JSON, such as a bare 500) for any other status."""
    if r.status_code == 200:
        return r.json()
    try:
        message = r.json().get("error", r.text)
    except ValueError:  # not JSON
        message = f"the analytics flow answered {r.status_code}: {r.text[:300]}"
    raise ValueError(message)


def query(s: CommonSettings, sql: str) -> tuple[list[str], list[Any]]:
    """Column names and rows of ``sql``; ``ValueError`` with a clear message when refused."""
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        r = _owner(s, "/query", {"sql": sql}, timeout=120)
        if r is not None:
            body = _answer(r)
            return body["columns"], body["rows"]
        clickhouse_store.ensure_schema(url)  # no flow runs: this process is the owner
    reader = AnalystReader(url)
    try:
        return reader.query(sql)
    except (QueryRefused, QueryFailed) as e:
        raise ValueError(str(e)) from e
    finally:
        reader.close()


def write_window_repairs(s: CommonSettings, rows: list[tuple[Any, ...]]) -> None:
    """Insert correction window rows (``REPAIR_COLUMNS`` order, parts ``repair:*``)."""
    if not rows:
        return
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        body = [[*r[:1], _iso(r[1]), _iso(r[2]), *r[3:]] for r in rows]
        # longer than the owner's own retries of a refused insert, so its answer is heard
        r = _owner(s, "/repairs/windows", body, timeout=DEFAULT_RETRY.budget_s + 30)
        if r is not None:
            _answer(r)
            return
        clickhouse_store.ensure_schema(url)
    insert_retrying(url, "post_like_window_parts", rows, REPAIR_COLUMNS)


def erase_user(s: CommonSettings, user_id: int) -> int:
    """Anonymize ``user_id``'s ``like_events`` rows (``sinks.clickhouse_erasure``); the
    rows still carrying the id (0 when done)."""
    url = s.effective_clickhouse_url
    if clickhouse_store.is_embedded(url):
        r = _owner(s, "/erasures", {"user_id": user_id}, timeout=300)
        if r is not None:
            return int(_answer(r)["remaining"])
        clickhouse_store.ensure_schema(url)  # no flow runs: this process is the owner
        return clickhouse_erasure.erase_user(url, user_id)
    # a server: the writers in other processes see the erased set within its TTL
    clickhouse_store.ensure_schema(url)
    client = clickhouse_store.get_client(url)
    with clickhouse_store.LOCK:
        client.command(
            "INSERT INTO likes.erased_users SELECT {u:UInt64}, now64(3)",
            parameters={"u": user_id},
        )
    time.sleep(clickhouse_erasure.ERASED_TTL_S + 1)
    return clickhouse_erasure.erase_user(url, user_id)


def _iso(t: datetime) -> str:
    return t.isoformat()


def print_rows(columns: list[str], rows: list[Any], *, as_json: bool) -> None:
    """A JSON array of row objects, or a tab-separated table."""
    if as_json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
        return
    print("\t".join(columns))
    for r in rows:
        print("\t".join(str(v) for v in r))
