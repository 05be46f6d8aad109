"""Detached processes tracked by PID files under ``.local/run``.

A PID file names a live process only if that process still runs the command it was
started with, so a recycled PID is never mistaken for a component.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def read_pid(pid_file: Path) -> int | None:
    """The PID recorded in ``pid_file``, if any."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid_file: Path, marker: str) -> int | None:
    """The recorded PID if that process runs and its command line contains ``marker``."""
    pid = read_pid(pid_file)
    if pid is None or _is_zombie(pid) or marker not in _cmdline(pid):
        return None
    return pid


def spawn(
    argv: list[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log_file``; record its PID."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=user,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop(pid_file: Path, marker: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process, SIGKILL after ``timeout``; True if one was running."""
    pid = alive(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive(pid_file, marker) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        while alive(pid_file, marker) is not None:
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True
