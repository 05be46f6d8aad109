"""Where the local stack keeps each component's PID file, start count and log."""

from __future__ import annotations

from pathlib import Path

from core.settings import CommonSettings


def pid_file(s: CommonSettings, name: str) -> Path:
    """``.local/run/<name>.pid``: the live PID of component ``name`` (contract section 1)."""
    return s.home / "run" / f"{name}.pid"


def starts_file(s: CommonSettings, name: str) -> Path:
    """How many times component ``name`` was started since supervisord started."""
    return s.home / "run" / f"{name}.starts"


def log_file(s: CommonSettings, name: str) -> Path:
    """The log file of component ``name``."""
    return s.home / "log" / f"{name}.log"


def read_count(path: Path) -> int:
    """The integer in ``path``, 0 when missing or unreadable."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
