"""``make run``: the stack in the foreground with a live status display; Ctrl-C stops it.

The supervisor restarts whatever dies meanwhile; the display shows restarts.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from core.settings import CommonSettings
from devstack import stack
from ops.status import collect, render


def run_foreground(s: CommonSettings, refresh_s: float = 2.0) -> int:
    """Start everything, show status until interrupted, then stop everything."""
    console = Console()
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        for name, secs in stack.up(s).items():
            console.print(f"{name:<14} healthy ({secs:.1f}s)")
        with Live(Text("collecting status..."), console=console, refresh_per_second=1) as live:
            while not stopping:
                live.update(Text(render(collect(s)) + "\n\nCtrl-C stops the stack."))
                time.sleep(refresh_s)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping: " + ", ".join(stack.down(s)))
    return 0
