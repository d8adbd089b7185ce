"""The ``gristmill`` command: thin commands over the service layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gristmill.cli import render
from gristmill.errors import RunFailed

if TYPE_CHECKING:  # the service layer is imported by the commands that use it: --help is fast
    from gristmill.workspace import Workspace
    from gristmill.workspace.core import RunOutcome

app = typer.Typer(
    name="gristmill",
    help="Versioned tables, contracts and features for ML engineers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        help="Project folder (default: the current folder or a parent).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
TableArg = Annotated[str, typer.Argument(help="Table name.")]
MAX_INT = 2**63 - 1
"""The largest number a catalog or an Arrow slice takes: larger ones are usage errors."""


def _open(project: Path | None) -> Workspace:
    from gristmill.workspace import Workspace

    return Workspace.open(project)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create.")],
    example: Annotated[str, typer.Option(help="Example to copy: churn.")] = "churn",
    scale: Annotated[str, typer.Option(help="Data size: small, medium or large.")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the data generator.")] = 7,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="Three more months with drift, held back in arriving/ until you copy them "
            "into data/.",
        ),
    ] = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Put users in PostgreSQL, transactions in MariaDB and events in NATS "
            "JetStream, and read them from there (e-mail as personal data).",
        ),
    ] = False,
    postgres: Annotated[
        str, typer.Option(help="--live: the PostgreSQL to load users into.")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    mysql: Annotated[
        str, typer.Option(help="--live: the MariaDB/MySQL to load transactions into.")
    ] = "mysql://root@127.0.0.1:3306/test",
    nats: Annotated[
        str, typer.Option(help="--live: the NATS JetStream server to publish events to.")
    ] = "nats://127.0.0.1:4222",
    json: JsonOpt = False,
) -> None:
    """Create a project from an example, with generated data."""
    import shlex

    from rich.markup import escape

    from gristmill.workspace.init import init_project
    from gristmill.workspace.live import Servers

    servers = Servers(postgres, mysql, nats) if live else None
    created = init_project(
        directory, example=example, scale=scale, seed=seed, drift=drift, live=servers
    )
    if json:
        render.emit_json(created)
        return
    render.out.print(
        f"created [bold]{escape(created['project'])}[/] in {escape(str(created['path']))} "
        f"({created['files']} data files, scale {scale})"
    )
    live_made = created.get("live") or {}
    for where, what in live_made.items():
        if isinstance(what, str):
            render.out.print(f"{where}: {escape(what)}")
    for variable in live_made.get("export", []):
        render.out.print(f"export {variable}=… (the password you gave) before gristmill run")
    folder = escape(shlex.quote(str(directory)))  # a command the user can paste
    if drift:
        render.out.print(
            f"{created['data']['arriving']} files of the drifted months wait in "
            f"{folder}/arriving/; later: cp -r arriving/. data/ && gristmill run"
        )
    render.out.print(f"next: cd {folder} && gristmill run")


@app.command()
def run(
    select: Annotated[
        list[str] | None,
        typer.Argument(help="What to run: name, +name (with upstream), name+ (with downstream)."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild everything selected.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    queue: Annotated[
        bool,
        typer.Option("--queue", help="Queue the run for the scheduler instead of running it here."),
    ] = False,
    priority: Annotated[
        int,
        typer.Option(min=-1000, max=1000, help="With --queue: higher runs first (default 0)."),
    ] = 0,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="With --queue: stop the run once it has run this long (30s, 15m, 2h).",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="Tag the run (repeatable); [runs] tag_limits bound tagged runs."),
    ] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Build stale tables: ingest new files, check contracts, run SQL and Python steps."""
    tags = _tags(tag or [])
    ws = _open(project)
    if dry_run:
        plan = ws.plan(select or (), full_refresh=full_refresh)
        render.emit_json(plan) if json else render.plan_table(plan)
        return
    if timeout is not None and not queue:
        raise typer.BadParameter("--timeout needs --queue (the scheduler enforces it)")
    if priority and not queue:
        raise typer.BadParameter("--priority needs --queue (it orders the queue)")
    if queue:
        queued = ws.enqueue(
            select or (),
            full_refresh=full_refresh,
            priority=priority,
            timeout=_duration("--timeout", timeout),
            tags=tags,
        )
        if json:
            return render.emit_json(queued)
        render.out.print(
            f"queued run [bold]{queued.run_id[:12]}[/] ({queued.selection or 'everything'}); "
            "`gristmill scheduler --once` runs the queue"
        )
        return
    report_run(lambda **kw: ws.run(select or (), full_refresh=full_refresh, tags=tags, **kw), json)


def _tags(values: list[str]) -> list[str]:
    import re

    from gristmill.definitions.schedules import TAG_PATTERN

    for value in values:
        if not re.match(TAG_PATTERN, value):
            raise typer.BadParameter(
                f"{value!r} is not a tag: letters, digits and _ . : - (at most 64)",
                param_hint="--tag",
            )
    return values


@app.command()
def backfill(
    table: TableArg,
    first: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First partition: 2025-10-01, a month (2025-10) or a key. Default: the first.",
            show_default=False,
        ),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Last partition, included (a month: all its days). Default: the latest.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild fresh partitions too.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which partitions would be built and why.")
    ] = False,
    queue: Annotated[
        bool,
        typer.Option("--queue", help="Queue the backfill for the scheduler instead."),
    ] = False,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Build a partitioned table's missing, failed and stale partitions in a range."""
    from gristmill.planning import Backfill

    if dry_run and queue:
        raise typer.BadParameter("--dry-run shows the plan; --queue queues it: pick one")
    ws = _open(project)
    request = Backfill(table, first, last, force)
    if dry_run:
        plan = ws.plan(backfill=request)
        render.emit_json(plan.steps[0]) if json else render.partition_plan(plan)
        return
    if queue:
        queued = ws.enqueue_backfill(request)
        if json:
            return render.emit_json(queued)
        render.out.print(
            f"queued backfill [bold]{queued.run_id[:12]}[/] ({queued.selection}); "
            "`gristmill scheduler --once` runs the queue"
        )
        return
    report_run(lambda **kw: ws.backfill(request, **kw), json)


def _duration(option: str, value: str | None) -> timedelta | None:
    from gristmill.definitions.models import parse_duration
    from gristmill.errors import DefinitionError

    if value is None:
        return None
    try:
        span = parse_duration(value)
    except DefinitionError as exc:
        raise typer.BadParameter(exc.message + f" ({exc.hint})", param_hint=option) from None
    if span <= timedelta(0):
        raise typer.BadParameter("must be longer than 0 s", param_hint=option)
    return span


def report_run(start: Callable[..., RunOutcome], json: bool) -> RunOutcome:
    """Run with progress bars (or quietly for --json), print the summary, fail on failure.

    SIGTERM (systemd's stop, `kill`) ends the run like Ctrl-C: closed as cancelled."""
    import signal

    from gristmill.cli.progress import RichReporter

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return _report_run(start, json, RichReporter)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_run(start: Callable[..., RunOutcome], json: bool, rich: Any) -> RunOutcome:
    if json:
        outcome = start()
        render.emit_json(
            {
                "run_id": outcome.result.run_id,
                "summary": outcome.summary(),
                "steps": outcome.result.steps,
            }
        )
    else:
        with rich() as reporter:
            outcome = start(reporter=reporter)
        render.run_summary(outcome.result.steps, outcome.summary())
    if not outcome.ok:
        if json:  # the document above already says what failed
            raise typer.Exit(code=RunFailed.exit_code)
        if outcome.result.status == "cancelled":
            raise RunFailed(
                f"run {outcome.result.run_id[:8]} was cancelled",
                hint="the steps it had started finished; the others did not start",
            )
        raise RunFailed(f"run {outcome.result.run_id[:8]} failed", hint="see the errors above")
    return outcome


@app.command()
def status(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Every table: version, rows, and whether it is fresh or stale (and why)."""
    rows = _open(project).status()
    if json:
        return render.emit_json(rows)
    render.records(
        "status",
        [r.__dict__ for r in rows],
        ["name", "kind", "version", "rows", "quarantined", "built_at", "state", "reason"],
    )


@app.command()
def tables(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Sources and tables defined by the project."""
    rows = _open(project).tables()
    if json:
        return render.emit_json(rows)
    view = [
        {
            **r.__dict__,
            "inputs": ", ".join(r.inputs),
            "columns": len(r.columns),
            "feature_view": "yes" if r.feature_view else "",
        }
        for r in rows
    ]
    render.records(
        "tables",
        view,
        ["name", "kind", "inputs", "version", "rows", "columns", "feature_view", "defined_at"],
    )


@app.command()
def runs(
    run_id: Annotated[str | None, typer.Argument(help="Show one run and its steps.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only runs in this status: queued, running, success, noop, failed, crashed, "
            "cancelled, timed_out."
        ),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only runs of this kind: build, score, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_INT, help="How many runs.")] = 20,
    log: Annotated[
        bool, typer.Option("--log", help="With a run id: the log the scheduler kept of it.")
    ] = False,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Recent runs, queued ones included, or one run and its steps (or its log)."""
    ws = _open(project)
    if log and not run_id:
        raise typer.BadParameter("--log needs a run id", param_hint="--log")
    if run_id and log:
        text = ws.run_log(run_id)
        if json:
            return render.emit_json({"run_id": ws.run_info(run_id).run_id, "log": text})
        render.out.file.write(text)
        return
    if run_id:
        info = ws.run_info(run_id)
        if json:
            return render.emit_json(info)
        render.run_header(info)
        if info.steps:
            render.records(
                "steps",
                [{**s, "engine": render.engine_text(s)} for s in info.steps],
                ["table", "kind", "status", "version", "engine", "reason", "error"],
            )
        return
    rows = ws.runs(limit, status=status, kind=kind)
    if json:
        return render.emit_json(rows)
    view = [
        {
            **r.__dict__,
            "run_id": r.run_id[:12],
            "status": r.status + (" (cancel asked)" if r.cancel_requested else ""),
            "at": r.started_at or r.created_at,
            "steps": str((r.summary or {}).get("steps", "")),
            "rows": (r.summary or {}).get("rows_written"),
        }
        for r in rows
    ]
    render.records(
        "runs",
        view,
        ["run_id", "kind", "status", "at", "selection", "requested_by", "steps", "rows"],
    )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id (a unique prefix is enough).")],
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Cancel a queued run, or stop a running one before its next step."""
    info = _open(project).cancel(run_id)
    if json:
        return render.emit_json(info)
    if info.status == "cancelled":
        render.out.print(f"cancelled run [bold]{info.run_id[:12]}[/]")
    else:
        render.out.print(
            f"asked run [bold]{info.run_id[:12]}[/] ({info.owner}) to stop: it stops before "
            "its next step (`gristmill runs` shows when)"
        )


@app.command()
def schedules(
    name: Annotated[str | None, typer.Argument(help="Show one schedule.")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Each schedule: cron, zone, its next ticks and its last tick's result."""
    ws = _open(project)
    rows = [ws.scheduler.schedule(name)] if name else ws.scheduler.schedules()
    if json:
        return render.emit_json(rows[0] if name else rows)
    view = []
    for r in rows:
        last = r.last_tick
        result = ""
        if last is not None:
            what = f"run {last['run_id'][:8]} {last['status']}" if last["ran"] else "skipped"
            result = f"{last['at']:%Y-%m-%d %H:%M}: {what}"
        view.append(
            {
                "name": r.name,
                "cron": r.cron,
                "timezone": r.timezone,
                "select": " ".join(r.select) or "everything",
                "catchup": r.catchup,
                "next": f"{r.next_ticks[0]:%Y-%m-%d %H:%M %Z}" if r.next_ticks else "never",
                "last": result,
            }
        )
    render.records(
        "schedules", view, ["name", "cron", "timezone", "select", "catchup", "next", "last"]
    )


@app.command()
def sensors(
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Each sensor: what it watches, its cursor, its last evaluation and why it fired or not."""
    rows = _open(project).scheduler.sensors()
    if json:
        return render.emit_json(rows)
    view = [
        {
            "name": r.name,
            "on": r.on,
            "select": " ".join(r.select) or "everything",
            "evaluated": f"{r.evaluated_at:%Y-%m-%d %H:%M:%S}" if r.evaluated_at else "never",
            "fired": "yes" if r.fired else "",
            "reason": r.reason or "",
            "last run": (
                f"{r.last_run['run_id'][:8]} {r.last_run['status']}" if r.last_run else ""
            ),
        }
        for r in rows
    ]
    render.records(
        "sensors", view, ["name", "on", "select", "evaluated", "fired", "reason", "last run"]
    )


@app.command()
def sources(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Each source: its kind, what it reads, its state (files, watermark), how far behind
    its newest landed change is, and its last error."""
    rows = _open(project).sources()
    if json:
        return render.emit_json(rows)
    view = [
        {
            "name": r.name,
            "kind": r.kind,
            "reads": r.reads,
            "version": "" if r.version is None else f"v{r.version}",
            "rows": "" if r.rows is None else f"{r.rows:,}",
            "state": ", ".join(f"{k} {v}" for k, v in r.state.items() if k != "watermark_type"),
            "behind": "" if r.behind_s is None else f"{r.behind_s:,.0f}s",
            "last error": r.last_error or "",
        }
        for r in rows
    ]
    render.records(
        "sources",
        view,
        ["name", "kind", "reads", "version", "rows", "state", "behind", "last error"],
    )


@app.command()
def ingest(
    source: Annotated[list[str], typer.Argument(help="The source(s) to read now.")],
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Read everything again.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep reading until stopped (Ctrl-C, SIGTERM): a line per extraction.",
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(min=0.0, max=3600, help="--follow: seconds between idle looks (default 1)."),
    ] = 1.0,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Read new data from sources now (their downstream tables are left for `run`)."""
    ws = _open(project)
    if follow:
        from gristmill.cli.scheduler import follow_sources

        return follow_sources(ws, source, full_refresh=full_refresh, idle_s=interval, json=json)
    report_run(lambda **kw: ws.ingest(source, full_refresh=full_refresh, **kw), json)


@app.command()
def erase(
    subject: Annotated[
        str,
        typer.Option(
            "--subject",
            help="COLUMN=VALUE: the person, e.g. user_id=42 (pseudonymized columns too).",
            show_default=False,
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask: the tables' history goes for good.")
    ] = False,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Erase a person's rows from every table that has the column, across history, and
    verify that no file or log entry still holds them."""
    ws = _open(project)
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise typer.BadParameter(
                "erase removes the subject's rows and every older version of the tables "
                "that held them, for good: add --yes",
                param_hint="--yes",
            )
        typer.confirm(
            f"Erase {subject} from every table, and every table's older versions?", abort=True
        )
    done = ws.erase(subject)
    if json:
        return render.emit_json(done)
    rows = sum(t.rows for t in done.tables)
    for t in done.tables:
        render.out.print(
            f"{t.table}: {t.rows:,} row(s) erased, v{t.before} -> v{t.after} is its only "
            f"version now ({t.files_removed} file(s) removed)"
        )
    render.out.print(
        f"erased {rows:,} row(s) from {len(done.tables)} of {len(done.checked)} table(s) with "
        f"{done.column}; verified: no file or log entry holds it (run {done.run_id[:8]})"
    )


@app.command()
def erasures(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """The erasure trail: when, by whom, which tables (the subject as a keyed digest)."""
    ws = _open(project)
    trail = ws.erasures()
    if json:
        return render.emit_json(trail)
    for e in trail:
        tables = ", ".join(t["table"] for t in e.details.get("tables", [])) or "(no rows)"
        render.out.print(
            f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor} {e.column_name}=<{e.subject[:12]}…> {tables}"
        )


@app.command()
def freshness(
    name: Annotated[str | None, typer.Argument(help="One freshness check.")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Each freshness check: its table or model, how old it is, its max_age, its last alert."""
    ws = _open(project)
    checks = [ws.watch.one(name)] if name else ws.watch.freshness()
    if json:
        return render.emit_json(checks[0] if name else checks)
    render.freshness_table(checks)


@app.command()
def scheduler(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="One tick: queue the due schedules, run what is queued, exit (cron, CI).",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, max=3600, help="Seconds between ticks (default 2).")
    ] = 2.0,
    metrics: Annotated[
        str | None,
        typer.Option(
            help="Serve Prometheus metrics on HOST:PORT (GET /metrics, a viewer key or above).",
            show_default=False,
        ),
    ] = None,
    metrics_public: Annotated[
        bool, typer.Option("--metrics-public", help="Serve /metrics without a key.")
    ] = False,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Queue the schedules' due runs and run the queue, one run at a time, in the
    foreground (Ctrl-C or SIGTERM: stop after the current run; a second one: cancel it)."""
    from gristmill.cli.scheduler import serve_queue

    address = _address(metrics) if metrics else None
    if metrics_public and address is None:
        raise typer.BadParameter("--metrics-public needs --metrics HOST:PORT")
    ws = _open(project)
    serve_queue(
        ws, once=once, interval=interval, json=json, metrics=address, metrics_public=metrics_public
    )


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Run what is queued now, then exit.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, max=3600, help="Seconds between looks at the queue.")
    ] = 2.0,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Run queued runs, each in a process of its own, without deciding schedules: start
    several (here or on other machines sharing a PostgreSQL catalog) to run more at once
    (max_concurrent in the runs section of gristmill.toml)."""
    from gristmill.cli.scheduler import serve_queue

    serve_queue(_open(project), once=once, interval=interval, json=json, decide=False)


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise typer.BadParameter(
            f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9465)", param_hint="--metrics"
        )
    return host.strip("[]"), int(port)


@app.command()
def show(
    table: TableArg,
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    limit: Annotated[int, typer.Option(min=0, max=MAX_INT, help="Rows to show.")] = 10,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Rows of a table version."""
    sample = _open(project).sample(table, version, limit=limit)
    if json:
        return render.emit_json(sample.to_dict())
    render.arrow(
        sample.data,
        f"{table} v{sample.version} ({sample.rows:,} rows, showing {sample.data.num_rows})",
    )


@app.command()
def quarantine(
    table: TableArg,
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    limit: Annotated[int, typer.Option(min=0, max=MAX_INT, help="Rows to show.")] = 10,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Rows that broke the contract of a table version, with the checks they failed."""
    sample = _open(project).sample(table, version, limit=limit, quarantined=True)
    if json:
        return render.emit_json(sample.to_dict())
    render.arrow(
        sample.data,
        f"{table} v{sample.version}: {sample.quarantined:,} quarantined {sample.quarantine_counts}",
    )


@app.command()
def history(table: TableArg, project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Every version of a table: run, fingerprint, rows, input versions."""
    rows = _open(project).history(table)
    if json:
        return render.emit_json(rows)
    view = [
        {
            **r.__dict__,
            "version": f"v{r.version}",
            "run_id": r.run_id[:12],
            "fingerprint": r.fingerprint[:12],
            "inputs": ", ".join(f"{k} v{v}" for k, v in r.inputs.items())
            or ", ".join(r.files[:3]) + (" …" if len(r.files) > 3 else ""),
            "recovered": "yes" if r.recovered else "",
        }
        for r in rows
    ]
    render.records(
        f"history of {table}",
        view,
        [
            "version",
            "built_at",
            "run_id",
            "mode",
            "fingerprint",
            "rows",
            "rows_added",
            "quarantined",
            "inputs",
            "recovered",
        ],
    )


@app.command()
def lineage(
    table: TableArg,
    upstream: Annotated[
        bool,
        typer.Option("--upstream/--downstream", help="What it was built from, or what reads it."),
    ] = True,
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """The lineage of a table version: exact input versions down to source files."""
    node = _open(project).lineage(table, upstream=upstream, version=version)
    if json:
        return render.emit_json(node)
    render.lineage(node, upstream)


@app.command()
def lookup(
    view: Annotated[str, typer.Argument(help="Online feature view.")],
    keys: Annotated[list[str], typer.Argument(help="Entity keys.")],
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Online features of entities: each one's latest row, as serving reads it."""
    rows = _open(project).lookup(view, keys)
    found = [
        {"key": k, "found": r is not None, "features": r} for k, r in zip(keys, rows, strict=True)
    ]
    if json:
        return render.emit_json(found)
    for row in found:
        render.out.print(
            f"[bold]{row['key']}[/]: {row['features'] if row['found'] else 'not found'}"
        )


from gristmill.cli import models as _models  # noqa: E402,F401 - registers the model commands
from gristmill.cli import monitors as _monitors  # noqa: E402,F401 - and the monitor commands
from gristmill.cli import services as _services  # noqa: E402,F401 - and the service commands
