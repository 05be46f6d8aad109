"""Progress lines on stderr, timestamped; the figures themselves go to ``bench/results``."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
