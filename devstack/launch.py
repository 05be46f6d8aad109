"""``likes run-component NAME``: what supervisord runs for each component.

Guarantee: before the real program starts, its PID file holds the PID it will have
(the launcher writes its own PID, then ``exec``s the program in the same process), so
``.local/run/<name>.pid`` names the live process from its first instant and after every
restart; the component's ``prepare`` step (clear a killed server's leftovers, render its
config) runs before every start, the supervisor's restarts included. A component off
the request path (flows, Connect, the exporter, the jobs worker, Prometheus) runs at
``background_nice``, so under contention the scheduler serves the API and the stores it
waits on first.
"""

from __future__ import annotations

import os
import pwd

from core.settings import CommonSettings
from devstack import paths
from devstack.components import by_name


def _become(user: str) -> dict[str, str]:
    """Drop root privileges for ``user``; the environment entries that go with it."""
    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}


def exec_component(s: CommonSettings, name: str) -> None:
    """Prepare component ``name``, record its PID, and replace this process with it."""
    comp = by_name(s, name)
    comp.prepare()
    pid = paths.pid_file(s, name)
    pid.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid.with_name(f".{pid.name}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(pid)
    starts = paths.starts_file(s, name)
    starts.write_text(f"{paths.read_count(starts) + 1}\n")
    env = {**os.environ, **comp.env()}
    if comp.background and s.background_nice:
        os.nice(s.background_nice)  # inherited by the program and every thread it starts
    if comp.user is not None and os.geteuid() == 0:
        env.update(_become(comp.user))
    argv = comp.argv()
    os.execvpe(argv[0], argv, env)
