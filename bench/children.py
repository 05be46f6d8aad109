"""Child processes of the benchmarks: their environment, and the ``BENCH {...}`` lines they print.

A child gets its settings as ``LIKES_*`` variables derived from a settings object
(:func:`settings_env`), so it builds the very same ``FlowSettings()`` the parent meant;
it reports with :func:`emit`, and the parent collects those lines (:class:`Child`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.settings import REPO_ROOT, CommonSettings

PREFIX = "BENCH "
Event = dict[str, Any]  # one ``BENCH`` line: JSON with an ``event`` name


def settings_env(s: CommonSettings) -> dict[str, str]:
    """``LIKES_<FIELD>`` for every field of ``s`` that has a value."""
    env = {}
    for name in type(s).model_fields:
        value = getattr(s, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"LIKES_{name.upper()}"] = str(value)
    return env


def child_env(s: CommonSettings | None = None) -> dict[str, str]:
    """This process's environment, the repository on the path, and ``s`` if given."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(settings_env(s) if s is not None else {})
    return env


def emit(event: str, **fields: object) -> None:
    """Print one ``BENCH`` line for the parent (in a child)."""
    print(PREFIX + json.dumps({"event": event, **fields}), flush=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """``python -m MODULE ...`` whose ``BENCH {...}`` stdout lines are collected."""

    def __init__(self, args: list[str], log_path: Path, s: CommonSettings | None = None) -> None:
        self.log_path = log_path
        self.events: list[Event] = []
        self._lock = threading.Lock()
        with log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(s),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(PREFIX):
                with self._lock:
                    self.events.append(json.loads(line.removeprefix(PREFIX)))

    def event(self, name: str) -> Event | None:
        """The first ``name`` event so far."""
        with self._lock:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait_event(self, name: str, timeout: float) -> Event | None:
        """The first ``name`` event, waiting up to ``timeout`` s or until the child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = self.event(name)
            if e is not None:
                return e
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return self.event(name)
            time.sleep(0.05)
        return None

    def log_tail(self, n: int = 1500) -> str:
        """The end of the child's stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM this child (by its pid), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_all(kids: list[Child], name: str, timeout: float, what: str) -> list[Event]:
    """Every child's ``name`` event; raises with the first silent child's log if one is missing."""
    got = [k.wait_event(name, timeout) for k in kids]
    for k, e in zip(kids, got, strict=True):
        if e is None:
            raise RuntimeError(f"{what} did not finish: {k.log_tail()}")
    return [e for e in got if e is not None]
