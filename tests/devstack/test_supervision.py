"""The supervisor: every component is a supervisord program, a crash loop backs off
instead of spinning, and the component heals by itself once its cause is gone."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from core.settings import CommonSettings
from devstack import paths, process
from devstack import stack as stack_ops
from devstack.components import build_components
from devstack.supervisor import START_RETRIES, START_SECS, Supervisor, render


def test_every_component_is_a_program_with_backoff(settings: CommonSettings) -> None:
    comps = build_components(settings)
    text = render(settings, [(c.name, c.stop_signal, c.stop_as_group) for c in comps])
    for c in comps:
        section = text.split(f"[program:{c.name}]", 1)[1].split("[program:", 1)[0]
        assert f"run-component {c.name}" in section
        assert "autorestart = true" in section and "autostart = false" in section
        assert f"startsecs = {START_SECS}" in section
        assert f"startretries = {START_RETRIES}" in section
    assert "stopsignal = INT" in text.split("[program:postgres]", 1)[1].split("[program:")[0]


@pytest.mark.integration
def test_crash_loop_backs_off_then_heals(stack: CommonSettings) -> None:
    """Redis cannot bind its port (held by us): it dies at once, again and again; the
    supervisor retries with growing delays, and Redis is back by itself once freed."""
    sup = Supervisor(stack)
    port = urlsplit(stack.redis_url).port
    assert port is not None
    sup.stop("redis")
    starts = paths.starts_file(stack, "redis")
    before = paths.read_count(starts)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        sup.start("redis")
        time.sleep(15)
        attempts = paths.read_count(starts) - before
        state = (sup.info("redis") or {}).get("statename")
    finally:
        blocker.close()
    # without back-off a process that dies within a second would be started ~15 times
    assert 2 <= attempts <= 6, attempts
    assert state in ("BACKOFF", "STARTING"), state
    deadline = time.monotonic() + 30
    while True:
        try:
            if redis.Redis.from_url(stack.redis_url, socket_timeout=1).ping():
                break
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, "redis did not heal by itself"
        time.sleep(0.5)
    assert process.live_pid(paths.pid_file(stack, "redis")) is not None
    stack_ops.up(stack)  # leaves everything as the other tests expect it


@pytest.mark.integration
def test_stopping_a_program_this_supervisord_does_not_have_is_not_an_error(
    stack: CommonSettings,
) -> None:
    """A stack started with another topology (``LIKES_API_PROCESSES``, the other
    profile's names) must still come down: ``likes stack down`` asks for the programs of
    its own topology, and one that supervisord does not know is simply not running."""
    sup = Supervisor(stack)
    before = {name: (sup.info(name) or {}).get("pid") for name in ("redis", "postgres")}
    assert sup.stop("api-7") is False
    after = {name: (sup.info(name) or {}).get("pid") for name in ("redis", "postgres")}
    assert after == before and all(before.values()), "nothing else was stopped"


@pytest.mark.integration
def test_a_benchmark_with_other_settings_than_the_stack_refuses_to_measure(
    stack: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared API port answers whatever the topology, so a benchmark that reads
    another topology than the stack runs would measure without some of its processes."""
    from bench.stack_wait import topology_mismatch

    assert set(Supervisor(stack).programs()) == {c.name for c in build_components(stack)}
    assert topology_mismatch() is None
    monkeypatch.setenv("LIKES_API_PROCESSES", "2")
    why = topology_mismatch()
    assert why is not None and "['api']" in why and "['api-0', 'api-1']" in why, why


# threads that set their own priority: embedded ClickHouse's (chDB) memory tracker
SETS_OWN_PRIORITY = frozenset({"MemoryWorker"})


def _nice(tid_stat: str) -> int:
    # /proc/<pid>/task/<tid>/stat: field 19 is nice; the command (field 2) may hold spaces
    return int(tid_stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.integration
def test_components_off_the_request_path_run_at_the_background_nice(
    stack: CommonSettings,
) -> None:
    """Every thread of a background component (a flow, Connect, the exporter, the jobs
    worker, Prometheus) runs ``background_nice`` above supervisord's nice value; the API
    and the stores at supervisord's."""
    assert stack.background_nice > 0
    supervisord = Supervisor(stack).pid()
    assert supervisord is not None
    base = _nice(Path(f"/proc/{supervisord}/stat").read_text())
    seen: dict[str, set[int]] = {}
    for comp in build_components(stack):
        pid = process.live_pid(stack_ops.pid_file(stack, comp.name))
        assert pid is not None, f"{comp.name} is not running"
        tasks = [
            t
            for t in Path(f"/proc/{pid}/task").iterdir()
            if (t / "comm").read_text().strip() not in SETS_OWN_PRIORITY
        ]
        seen[comp.name] = {_nice((t / "stat").read_text()) for t in tasks}
        want = min(19, base + stack.background_nice) if comp.background else base
        assert seen[comp.name] == {want}, (comp.name, seen[comp.name])
    off_path = ("flow-", "connect", "exporter", "jobs", "prometheus")
    for comp in build_components(stack):
        assert comp.background == comp.name.startswith(off_path), comp.name


def test_a_timed_supervisor_call_to_a_silent_server_fails_within_its_timeout(
    tmp_path: Path,
) -> None:
    """The exporter asks supervisord with a timeout (the standard XML-RPC transport has
    none): a server that takes the connection and never answers costs the call its
    timeout, not the exporter's poll for good."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts; nobody ever answers
        s = CommonSettings(home=tmp_path, supervisor_port=silent.getsockname()[1])
        t0 = time.monotonic()
        with pytest.raises(OSError):  # socket.timeout (TimeoutError) is an OSError
            Supervisor(s, timeout=0.5).start_times()
        assert time.monotonic() - t0 < 3
