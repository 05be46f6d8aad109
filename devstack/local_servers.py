"""PostgreSQL and Redis from Debian packages, in project-owned data dirs under ``.local``.

PostgreSQL runs as a non-root user (``postgres`` when started by root) with
``wal_level=logical``; it listens on TCP loopback only, with password auth.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from devstack import process

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_SETTINGS = {
    # logical decoding for Debezium (pgoutput)
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_connections": "200",
    "wal_keep_size": "256MB",
    # a slot whose consumer stopped cannot fill the disk: past this it is invalidated
    # (Connect then fails loudly; README runbook "Replication slot lost")
    "max_slot_wal_keep_size": "4GB",
    # a wait on a lock longer than deadlock_timeout (1 s) is logged with who holds it
    "log_lock_waits": "on",
}
"""What the pipeline relies on from its Postgres server; ``docker-compose.yml`` passes
the same (checked by ``tests/test_compose.py``)."""
_PG_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_buffers = 256MB
track_commit_timestamp = on
logging_collector = off
""" + "".join(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())


def pg_user() -> str | None:
    """The OS user PostgreSQL runs as: ``postgres`` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def _ensure_traversable(path: Path, user: str) -> None:
    """Let ``user`` reach ``path``: add search permission on ancestors that lack it."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    uid = pwd.getpwnam(user).pw_uid
    os.chown(path, uid, uid)


def _kill_orphaned_backends(data: Path) -> int:
    """SIGKILL server processes left running in ``data`` by a postmaster that was killed.

    They keep the old shared memory attached, which stops a new postmaster from starting.
    """
    killed = 0
    for pid in process.pids_with_cwd(data):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    return killed


def _drop_stale_lock(data: Path, wait_s: float = 10.0) -> None:
    """Remove ``postmaster.pid`` once the postmaster it names has died.

    A killed postmaster is still exiting for a moment, and then a zombie until its parent
    reaps it; either way it still answers ``kill(pid, 0)`` and a new server would refuse
    to start. A zombie holds nothing, so its lock is stale.
    """
    lock = data / "postmaster.pid"
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + wait_s
    while (state := process.proc_state(pid)) is not None and state not in ("Z", "X"):
        if process.cmdline(pid) or time.monotonic() > deadline:
            return  # a live server (or one that will not die): leave its lock alone
        time.sleep(0.05)
    lock.unlink(missing_ok=True)


def pg_prepare(data_root: Path, port: int) -> None:
    """Create the cluster once (idempotent), write its settings, clear a killed one's orphans."""
    data = data_root / "data"
    if data.exists():
        _kill_orphaned_backends(data)
        _drop_stale_lock(data)
    user = pg_user()
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        data_root.mkdir(parents=True, exist_ok=True)
        pwfile = data_root / "superuser.pw"
        if not pwfile.exists():
            pwfile.write_text(secrets.token_hex(16))
        pwfile.chmod(0o644 if user else 0o600)
        if user:
            _ensure_traversable(data_root, user)
        cmd = [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-instructions",
        ]
        subprocess.run(cmd, check=True, capture_output=True, user=user, group=user)
    conf = data / "postgresql.conf"
    text = conf.read_text()
    marker = "# --- likestream ---"
    if marker in text:
        text = text.split(marker)[0]
    conf.write_text(text + marker + _PG_CONF.format(port=port))


def pg_command(data_root: Path) -> list[str]:
    """argv running the postmaster in the foreground."""
    return [str(PG_BIN / "postgres"), "-D", str(data_root / "data")]


def _superuser_url(data_root: Path, app_url: str) -> str:
    parts = urlsplit(app_url)
    pw = (data_root / "superuser.pw").read_text().strip()
    return f"postgresql://postgres:{pw}@{parts.hostname}:{parts.port}/postgres"


def pg_ready(data_root: Path, app_url: str) -> bool:
    """True when the server accepts superuser connections."""
    try:
        with psycopg.connect(_superuser_url(data_root, app_url), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError):
        return False


def pg_bootstrap(data_root: Path, app_url: str) -> None:
    """Create the application role (LOGIN, REPLICATION) and database, once."""
    parts = urlsplit(app_url)
    user, password, db = parts.username, parts.password, parts.path.lstrip("/")
    with psycopg.connect(_superuser_url(data_root, app_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    sql.Identifier(user or ""), sql.Literal(password)
                )
            )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db), sql.Identifier(user or "")
                )
            )


def slot_exists(app_url: str, slot: str) -> bool:
    """True if replication slot ``slot`` exists in the edge store."""
    with psycopg.connect(app_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return row is not None


def system_identifier(app_url: str) -> str:
    """The database cluster's system identifier: new with every ``initdb``."""
    with psycopg.connect(app_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    return str(row[0]) if row else ""


def redis_command(data_dir: Path, port: int) -> list[str]:
    """argv running redis-server in the foreground with append-only persistence."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
