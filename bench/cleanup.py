"""Clean-up that survives stores restarting under us, and leftovers of crashed runs.

Other engineers run fault tests on the shared stack, so a store may be down when a
benchmark cleans up: :func:`retrying` keeps trying for a while and records what it
could not remove in :data:`LEFTOVERS`. :func:`sweep_leftovers` removes what an earlier
bench process left behind once that process is gone (its PID is in every name).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from bench import kafka_admin, names
from bench.log import log
from core.settings import CommonSettings

LEFTOVERS: list[str] = []


def retrying(what: str, fn: Callable[[], None], budget_s: float = 120.0) -> bool:
    """Run ``fn`` until it succeeds or ``budget_s`` passed; False (and logged) if it never did."""
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


def drop_schema(schema: str) -> None:
    """``DROP SCHEMA ... CASCADE`` on the stack's database."""
    url = CommonSettings().postgres_url
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _orphaned(name: str) -> bool:
    pid = names.owner_pid(name)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sweep_schemas() -> list[str]:
    url = CommonSettings().postgres_url
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as c:
        rows = c.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'")
        dead = [str(name) for (name,) in rows.fetchall() if _orphaned(str(name))]
    for name in dead:
        drop_schema(name)
    return [f"schema {s}" for s in dead]


def _sweep_topics() -> list[str]:
    dead = [t for t in kafka_admin.list_topics() if _orphaned(t)]
    kafka_admin.delete_topics(dead)
    return [f"topic {t}" for t in dead]


def sweep_leftovers() -> list[str]:
    """Remove what crashed bench processes left (schemas, topics); return what was removed."""
    removed: list[str] = []
    for what, sweep in (("schemas", _sweep_schemas), ("topics", _sweep_topics)):
        try:
            removed += sweep()
        except Exception as e:
            log(f"could not sweep old bench {what}: {e}")
    return removed
