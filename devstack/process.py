"""Process facts the local stack needs, read from ``/proc`` in this one module.

A component's PID file (``.local/run/<name>.pid``) is written by the component's
launcher just before it ``exec``s the real program, so it holds the live PID from the
first instant, across every restart by the supervisor.
"""

from __future__ import annotations

from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    """The PID recorded in ``pid_file``, if any."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``R``, ``S``, ``Z``, ...), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> bytes:
    """The command line of ``pid``; empty once it is exiting (or gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pid_alive(pid: int) -> bool:
    """``pid`` exists and has not finished exiting (a zombie counts as gone)."""
    return proc_state(pid) not in (None, "Z", "X")


def live_pid(pid_file: Path) -> int | None:
    """The PID in ``pid_file`` if that process is alive."""
    pid = read_pid(pid_file)
    return pid if pid is not None and pid_alive(pid) else None


def pids_with_cwd(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (e.g. a data dir's servers)."""
    target = directory.resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "cwd").resolve() == target:
                found.append(int(proc.name))
        except OSError:
            continue
    return found
