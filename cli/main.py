"""The ``likes`` command: configuration, tokens, posts, status, stack control, processes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from core import watchdog
from core.settings import CommonSettings


def _print(obj: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            print(f"{k}: {v if not isinstance(v, dict | list) else json.dumps(v, default=str)}")
    else:
        print(obj)


def cmd_config(a: argparse.Namespace) -> int:
    _print(CommonSettings().public_dict(), a.json)
    return 0


def cmd_dev_token(a: argparse.Namespace) -> int:
    from ingest_api.auth import issue_token

    s = CommonSettings()
    print(issue_token(s.jwt_secret.get_secret_value(), a.user_id, scope=a.scope, ttl_s=a.ttl))
    return 0


def cmd_posts_add(a: argparse.Namespace) -> int:
    from ops.posts import add_post

    _print(add_post(CommonSettings(), a.post_id, a.author), False)
    return 0


def cmd_migrate(a: argparse.Namespace) -> int:
    from schemas.migrate import apply_migrations

    print("applied:", ", ".join(apply_migrations(CommonSettings().postgres_url)) or "nothing")
    return 0


def cmd_api(a: argparse.Namespace) -> int:
    import uvicorn

    from core.settings import ApiSettings

    s = ApiSettings()
    watchdog.arm(s.api_stall_s)  # the app's lifespan beats it while the event loop turns
    options: dict[str, Any] = {
        "factory": True,
        "log_level": "warning",
        "access_log": False,
        "timeout_keep_alive": 30,
    }
    if a.member is None:
        uvicorn.run(
            "ingest_api.app:create_app",
            host=a.host or s.api_host,
            port=a.port or s.api_port,
            **options,
        )
        return 0
    from ingest_api.listen import member_sockets

    config = uvicorn.Config("ingest_api.app:create_app", **options)
    shared, own = member_sockets(s, a.member)
    uvicorn.Server(config).run(sockets=[shared, own])
    return 0


def cmd_stack(a: argparse.Namespace) -> int:
    from devstack import stack

    s = CommonSettings()
    if a.action == "up":
        for name, secs in stack.up(s).items():
            print(f"{name:<14} healthy ({secs:.1f}s)")
    elif a.action == "down":
        print("stopped:", ", ".join(stack.down(s)) or "nothing was running")
    else:
        from cli.live import run_foreground

        return run_foreground(s)
    return 0


def cmd_run_component(a: argparse.Namespace) -> int:
    from devstack.launch import exec_component

    exec_component(CommonSettings(), a.name)
    return 1  # not reached: exec replaced this process


def cmd_flow(a: argparse.Namespace) -> int:
    from flows.runner import OldStageKeys, run

    addresses = a.addresses.split(";") if a.addresses else None
    try:
        run(a.name, process_id=a.process_id, addresses=addresses)
    except OldStageKeys as e:  # an operator's step, not a crash: say which, no traceback
        print(f"error: flow {a.name} refused to start: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_analytics(a: argparse.Namespace) -> int:
    from ops.analytics import print_rows, query

    try:
        columns, rows = query(CommonSettings(), a.sql)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_rows(columns, rows, as_json=a.json)
    return 0


def cmd_reconcile(a: argparse.Namespace) -> int:
    from ops.reconcile import reconcile

    left, summary = reconcile(CommonSettings(), fix=a.repair)
    _print(summary, a.json)
    return 0 if left.clean else 1


def cmd_backfill(a: argparse.Namespace) -> int:
    from datetime import datetime

    from ops.backfill import BackfillError, run

    try:
        since = datetime.fromisoformat(a.since) if a.since else None
        report = run(CommonSettings(), a.projection, since, show_progress=not a.json)
    except (BackfillError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print(report.as_dict(), a.json)
    return 1 if report.unsettled else 0


def cmd_flows_reset(a: argparse.Namespace) -> int:
    from devstack.stack import StackError
    from ops.flow_reset import ResetError, reset

    if not a.yes:
        print(
            "error: this deletes the flows' recovery stores and restarts them from the end "
            "of their topics, then backfills every projection; pass --yes",
            file=sys.stderr,
        )
        return 2
    try:
        report = reset(CommonSettings(), show_progress=not a.json)
    except (ResetError, StackError) as e:
        if e.__cause__ is not None:  # the failure itself, then what it leaves to do
            traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 1
    _print(report.as_dict(), a.json)
    return 1 if report.backfill.get("unsettled") else 0


def cmd_dlq_list(a: argparse.Namespace) -> int:
    from ops.dlq import list_dead_letters, render_table

    try:
        views = list_dead_letters(CommonSettings(), limit=None)
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    shown = views[-a.limit :] if a.limit > 0 else views
    if a.json:
        print(json.dumps([v.to_json() for v in shown], indent=2))
    else:
        render_table(shown, total=len(views))
    return 0


def cmd_dlq_replay(a: argparse.Namespace) -> int:
    from ops.dlq import replay

    try:
        report = replay(CommonSettings(), None if a.all else a.ids, force=a.force)
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2) if a.json else report.render())
    return report.exit_code


def cmd_exporter(a: argparse.Namespace) -> int:
    from ops.exporter import serve

    serve(CommonSettings())
    return 0  # not reached: serves until killed


def cmd_erase_user(a: argparse.Namespace) -> int:
    from ops import erasure

    s = CommonSettings()
    if a.user_id <= 0 or a.user_id >= 2**63:
        print("error: a user id is a positive 64-bit integer", file=sys.stderr)
        return 2
    job_id = erasure.request(s, a.user_id)
    job = erasure.wait(s, job_id, timeout_s=a.timeout)
    print(json.dumps(job.as_dict(), indent=2, default=str) if a.json else erasure.render(job))
    return 0 if job.status == "done" else 1


def cmd_cdc_recover(a: argparse.Namespace) -> int:
    from datetime import datetime

    from ops.cdc_recover import recover

    try:
        since = datetime.fromisoformat(a.since) if a.since else None
    except ValueError as e:
        print(f"error: --since: {e}", file=sys.stderr)
        return 2
    report = recover(CommonSettings(), since)
    if a.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(
            f"slot {report.slot} at {report.slot_created_at}; republished "
            f"{report.republished:,} outbox rows (oldest {report.oldest_republished}); "
            f"connect {report.connect}; {report.seconds:.1f}s"
        )
        for note in report.notes:
            print(f"note: {note}")
    return 0


def cmd_jobs_worker(a: argparse.Namespace) -> int:
    from ops.jobs_worker import serve

    serve(CommonSettings())
    return 0  # not reached: serves until killed


def cmd_status(a: argparse.Namespace) -> int:
    from ops.status import collect, render

    report = collect(CommonSettings())
    print(json.dumps(report, indent=2, default=str) if a.json else render(report))
    return 0 if report["healthy"] else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="likes", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("config", cmd_config, "effective settings").add_argument("--json", action="store_true")
    t = add("dev-token", cmd_dev_token, "a JWT for development and tests")
    t.add_argument("user_id", type=int)
    t.add_argument("--scope", default="")
    t.add_argument("--ttl", type=int, default=3600)
    posts = sub.add_parser("posts", help="post registry").add_subparsers(dest="pcmd", required=True)
    pa = posts.add_parser("add", help="register a post that can be liked")
    pa.add_argument("post_id", type=int)
    pa.add_argument("--author", type=int, required=True)
    pa.set_defaults(fn=cmd_posts_add)
    add("status", cmd_status, "health, lags, drift, hot posts").add_argument(
        "--json", action="store_true"
    )
    add("migrate", cmd_migrate, "apply pending SQL migrations")
    add("exporter", cmd_exporter, "serve CDC, flow lag, drift and store metrics (Prometheus)")
    cdc = sub.add_parser("cdc", help="change data capture").add_subparsers(
        dest="ccmd", required=True
    )
    cr = cdc.add_parser(
        "recover", help="after a lost replication slot: re-create it, republish the outbox"
    )
    cr.add_argument("--since", help="republish outbox rows from this time (ISO 8601)")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(fn=cmd_cdc_recover)
    add("jobs-worker", cmd_jobs_worker, "run erasure jobs the API accepted (supervised)")
    eu = add("erase-user", cmd_erase_user, "erase a user's likes and id from every projection")
    eu.add_argument("user_id", type=int)
    eu.add_argument("--json", action="store_true")
    eu.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")
    api = add("api", cmd_api, "run the ingest API in the foreground")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument(
        "--member",
        type=int,
        help="cluster profile: API process MEMBER, sharing the API port with the others",
    )
    rc = add("reconcile", cmd_reconcile, "compare projections with the edge store")
    rc.add_argument("--repair", action="store_true", help="fix the drift found")
    rc.add_argument("--json", action="store_true")
    fr = add(
        "flows-reset",
        cmd_flows_reset,
        "lost recovery store: restart the flows from the end of their topics and backfill",
    )
    fr.add_argument("--yes", action="store_true", help="confirm (it deletes flow state)")
    fr.add_argument("--json", action="store_true")
    bf = add("backfill", cmd_backfill, "rebuild projections from the edge store")
    bf.add_argument("--since", help="only posts with an edge changed since (ISO 8601)")
    bf.add_argument(
        "--projection",
        action="append",
        help="redis, postgres, recent, clickhouse, notifications or trending"
        " (repeatable; default all)",
    )
    bf.add_argument("--json", action="store_true")
    fl = add("flow", cmd_flow, "run a dataflow in the foreground (with recovery)")
    fl.add_argument("name")
    fl.add_argument("--process-id", type=int)
    fl.add_argument("--addresses", help="host:port;host:port of every process")
    an = sub.add_parser("analytics", help="ClickHouse analytics").add_subparsers(
        dest="acmd", required=True
    )
    aq = an.add_parser("query", help="run read-only SQL, also while the system runs")
    aq.add_argument("sql")
    aq.add_argument("--json", action="store_true")
    aq.set_defaults(fn=cmd_analytics)
    dlq = sub.add_parser("dlq", help="dead letters of the flows").add_subparsers(
        dest="dcmd", required=True
    )
    dl = dlq.add_parser("list", help="what the flows dead-lettered, oldest first")
    dl.add_argument("--json", action="store_true", help="complete entries as a JSON array")
    dl.add_argument("--limit", type=int, default=100, help="only the newest N (0: all)")
    dl.set_defaults(fn=cmd_dlq_list)
    dr = dlq.add_parser("replay", help="re-inject dead letters once their cause is fixed")
    which = dr.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", action="append", metavar="ID", help="repeatable")
    which.add_argument("--all", action="store_true", help="every dead letter")
    dr.add_argument("--force", action="store_true", help="send even if replayed or invalid")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(fn=cmd_dlq_replay)
    rcomp = add("run-component", cmd_run_component, "what the supervisor runs for a component")
    rcomp.add_argument("name")
    st = add("stack", cmd_stack, "the local stack: up, down, or run in the foreground")
    st.add_argument("action", choices=["up", "down", "run"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``likes`` console script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    rc: int = args.fn(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
