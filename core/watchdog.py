"""A process that stops making progress ends itself, so that its supervisor restarts it.

Guarantee: once :func:`arm` has been called, if no :func:`beat` comes for ``stall_s``
seconds (less at most the re-arming interval below) the process writes every thread's
stack to stderr (its log) and exits at once with status 1 (``os._exit``: nothing else
runs, as after ``kill -9``). Its supervisor (supervisord here, the container runtime in
the compose profiles) starts it again and it
resumes from its last snapshot, so what the stuck process held is delivered again: at
least once, as after any crash, and the sinks' writes are idempotent under replay.

What counts as progress is the caller's choice: a flow beats when its input is polled
and when a sink retries a write (:mod:`flows.runner` arms it), the API while its event
loop turns (``likes api``), the exporter after every poll, the jobs worker after every
poll and every step of a job. A deadlock between
threads, a write that never returns and a thread that never releases the GIL are all
caught: the timer is :mod:`faulthandler`'s, a C thread that needs neither the GIL nor
any Python lock, and it dumps the stacks without them.

Unarmed (tests that build flows in the test process), :func:`beat` does nothing. A beat
re-arms the timer at most once a second (a quarter of ``stall_s`` if shorter), which
costs one short-lived thread.
"""

from __future__ import annotations

import faulthandler
import sys
import time

REARM_EVERY_S = 1.0
STARTUP_STALLS = 5  # the first beat may take this many stall limits (resume, connect)


class _Timer:
    stall_s: float | None = None
    rearm_s = REARM_EVERY_S
    armed_at = 0.0


_timer = _Timer()


def arm(stall_s: float, *, first_s: float | None = None) -> None:
    """Exit the process unless :func:`beat` is called within ``stall_s`` seconds of the
    last beat; the first beat may take ``first_s`` (default ``STARTUP_STALLS`` limits:
    recovery, connections). ``stall_s`` 0 (a setting's "never") arms nothing."""
    if stall_s <= 0:
        return
    _timer.stall_s = stall_s
    _timer.rearm_s = min(REARM_EVERY_S, stall_s / 4)
    _timer.armed_at = time.monotonic()
    first_s = STARTUP_STALLS * stall_s if first_s is None else first_s
    faulthandler.dump_traceback_later(first_s, exit=True, file=sys.stderr)


def beat() -> None:
    """The process is making progress (any thread may call this, as often as it likes)."""
    stall_s = _timer.stall_s
    if stall_s is None:
        return
    now = time.monotonic()
    if now - _timer.armed_at < _timer.rearm_s:
        return
    _timer.armed_at = now
    faulthandler.dump_traceback_later(stall_s, exit=True, file=sys.stderr)
