"""The watchdog (``core.watchdog``) in real processes: a process whose threads deadlock,
or whose one thread holds the GIL, exits by itself with every stack in its log; one that
keeps beating (from any thread) lives on; and a real Bytewax flow on a real Kafka topic
beats on every poll while idle, and exits once one of its steps never returns; so does
an API process (``likes api``) whose event loop is blocked, an exporter whose poll
never returns, and a jobs worker whose poll waits on a lock for good."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from confluent_kafka import Producer

from core.settings import CommonSettings
from tests.conftest import free_port
from tests.sinks.kafka_topics import create_topic, delete_topic

STALL_S = 1.0


def _python(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _spawn(body: str, *args: str) -> subprocess.Popen[str]:
    return _python("from core import watchdog\n" + textwrap.dedent(body), *args)


@contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed on the way out if a failed assertion left it running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err, time.monotonic() - t0


def test_a_deadlock_ends_the_process_with_every_stack_in_its_log() -> None:
    proc = _spawn(
        f"""
        import threading, time
        a, b = threading.Lock(), threading.Lock()
        def one():
            with a:
                time.sleep(0.2)
                with b: pass
        def other():
            with b:
                time.sleep(0.2)
                with a: pass
        watchdog.arm({STALL_S}, first_s={STALL_S})
        threads = [threading.Thread(target=one), threading.Thread(target=other)]
        for t in threads: t.start()
        for t in threads: t.join()
        """
    )
    code, err, took = _finish(proc, timeout=30)
    assert code == 1, err
    assert "Timeout" in err and "most recent call first" in err
    assert "in one" in err and "in other" in err, err
    assert took < STALL_S + 5


def test_a_thread_that_never_releases_the_gil_is_caught_too() -> None:
    # catastrophic backtracking: one C call that holds the GIL for hours
    proc = _spawn(
        f"""
        import re
        watchdog.arm({STALL_S}, first_s={STALL_S})
        re.match(r"(a+)+$", "a" * 64 + "b")
        """
    )
    code, err, _ = _finish(proc, timeout=30)
    assert code == 1 and "Timeout" in err, err


def test_beats_from_any_thread_keep_the_process_alive() -> None:
    proc = _spawn(
        f"""
        import threading, time
        watchdog.arm({STALL_S}, first_s={STALL_S})
        def beating():
            for _ in range(25):
                watchdog.beat()
                time.sleep(0.2)
        t = threading.Thread(target=beating)
        t.start()
        t.join()
        print("lived")
        """
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "lived" in out, err


def test_unarmed_beats_do_nothing() -> None:
    proc = _spawn(
        f"""
        import time
        watchdog.beat()
        time.sleep(2 * {STALL_S})
        """
    )
    code, err, _ = _finish(proc, timeout=30)
    assert code == 0, err


_FLOW = """
import sys, time
from datetime import timedelta
import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.run import cli_main
from core.settings import FlowSettings
from flows.kafka_input import kafka_source

bootstrap, topic, batches = sys.argv[1], sys.argv[2], sys.argv[3] == "batches"
flow = Dataflow("watchdog_probe")
settings = FlowSettings(kafka_bootstrap=bootstrap)
items = op.input("in", flow, kafka_source(settings, topic=topic, batches=batches))

def handle(item):
    values = getattr(item, "values", [getattr(item, "value", None)])  # a poll, a message
    while b"hang" in values:
        time.sleep(1)  # a step that never returns
    return repr(values)

op.output("out", op.map("handle", items, handle), StdOutSink())
watchdog.arm(2.0, first_s=6.0)
cli_main(flow, epoch_interval=timedelta(seconds=1))
"""


@pytest.mark.integration
@pytest.mark.parametrize("reading", ["batches", "messages"])
def test_a_flow_beats_while_idle_and_exits_when_a_step_never_returns(
    stack: CommonSettings, reading: str
) -> None:
    topic = create_topic(stack.kafka_bootstrap)
    try:
        with _reaped(_spawn(_FLOW, stack.kafka_bootstrap, topic, reading)) as proc:
            time.sleep(14.0)  # past the start-up allowance, polling an idle topic
            assert proc.poll() is None, proc.communicate()[1]
            producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
            producer.produce(topic, value=b"hang")
            assert producer.flush(10) == 0
            code, err, took = _finish(proc, timeout=30)
            assert code == 1, err
            assert "Timeout" in err and "in handle" in err, err
            assert took < 2.0 + 10
    finally:
        delete_topic(stack.kafka_bootstrap, topic)


_API = """
import argparse, sys, time
import ingest_api.app as app_module

real_create_app = app_module.create_app

def create_app():
    app = real_create_app()

    @app.get("/test/block")
    async def block_the_loop() -> None:
        time.sleep(3600)  # sync work on the event loop: nothing else runs

    return app

app_module.create_app = create_app  # `likes api` serves ingest_api.app:create_app by name
from cli.main import cmd_api
cmd_api(argparse.Namespace(member=None, host="127.0.0.1", port=int(sys.argv[1])))
"""


def test_an_api_process_whose_event_loop_blocks_ends_itself() -> None:
    """``likes api``'s own entry point (arming) and the app's lifespan (beating), with a
    route added that blocks the event loop; no store is reachable, and none is needed."""
    port = free_port()
    env = {
        **os.environ,
        "LIKES_API_STALL_S": "2",
        "LIKES_POSTGRES_URL": "postgresql://likes:likes@127.0.0.1:9/likes",
        "LIKES_REDIS_URL": "redis://127.0.0.1:9/0",
    }
    url = f"http://127.0.0.1:{port}"
    with _reaped(_python(_API, str(port), env=env)) as proc:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        time.sleep(12.0)  # past the start-up allowance (5 x 2 s), the loop idle but turning
        assert proc.poll() is None, proc.communicate()[1]
        assert httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/test/block", timeout=1)
        code, err, took = _finish(proc, timeout=30)
        assert code == 1, err
        assert "Timeout" in err and "in block_the_loop" in err, err[-3000:]
        assert took < 2.0 + 5


_EXPORTER = """
import sys, time
import ops.exporter as exporter
from core.settings import CommonSettings

polls = 0
real_slot_state = exporter.slot_state

def slot_state(url):
    global polls
    polls += 1
    if polls == 4:
        time.sleep(3600)  # a source that never answers
    return None

def kafka_down(*_args, **_kw):
    raise ConnectionError("no broker here")

exporter.slot_state = slot_state
exporter.end_offsets = kafka_down  # the other sources answer at once, or fail fast
exporter._ping = lambda _url: True
exporter._connector_state = lambda _s: "RUNNING"
exporter.last_drift = lambda _url: None
exporter.serve(CommonSettings(exporter_port=int(sys.argv[1])), stall_s=float(sys.argv[2]))
"""


def test_an_exporter_whose_poll_never_returns_ends_itself() -> None:
    """``ops.exporter.serve`` polling every 0.5 s with a 2 s limit, its sources replaced
    by ones that answer at once: three polls pass (2 s of them, so the polls beat), the
    fourth hangs in a source; the process ends itself (its last samples would otherwise
    be served for good)."""
    env = {**os.environ, "LIKES_EXPORTER_INTERVAL_S": "0.5"}
    with _reaped(_python(_EXPORTER, str(free_port()), "2", env=env)) as proc:
        code, err, _ = _finish(proc, timeout=120)
    assert code == 1, err[-3000:]
    assert "Timeout" in err and "in slot_state" in err, err[-3000:]


_JOBS = """
import sys
from core.settings import CommonSettings
from ops import jobs_worker
jobs_worker.POLL_S = 0.2
jobs_worker.serve(CommonSettings(jobs_port=int(sys.argv[1])), stall_s=float(sys.argv[2]))
"""


@pytest.mark.integration
def test_a_jobs_worker_beats_while_idle_and_exits_when_a_poll_waits_for_good(
    stack: CommonSettings,
) -> None:
    """``likes jobs-worker``'s ``serve`` with a 2 s limit on the real edge store: idle
    polls keep it alive past its start-up allowance; once another session holds the jobs
    table's lock (a poll that would wait for as long as the lock is held), it ends."""
    import psycopg

    with _reaped(_python(_JOBS, str(free_port()), "2")) as proc:
        time.sleep(14.0)  # past the start-up allowance (five limits), polling
        assert proc.poll() is None, proc.communicate()[1]
        with psycopg.connect(stack.postgres_url) as conn:
            conn.execute("LOCK TABLE erasure_jobs IN ACCESS EXCLUSIVE MODE")
            code, err, took = _finish(proc, timeout=30)
        assert code == 1, err[-3000:]
        assert "Timeout" in err and "jobs_worker" in err, err[-3000:]
        assert took < 2.0 + 5
