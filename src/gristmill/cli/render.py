"""Turning service-layer shapes into rich tables or one JSON document."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gristmill.errors import OutputError
from gristmill.execution.reporter import StepResult, StepStatus
from gristmill.workspace.shapes import LineageNode, to_jsonable

if TYPE_CHECKING:
    import pyarrow as pa

    from gristmill.planning import Plan

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    "success": "green",
    "fresh": "green",
    "skipped": "dim",
    "noop": "dim",
    "failed": "bold red",
    "error": "bold red",
    "alert": "bold red",
    "blocked": "yellow",
    "stale": "yellow",
    "never built": "yellow",
    "crashed": "red",
    "running": "cyan",
    "queued": "cyan",
    "cancelled": "yellow",
    "timed_out": "red",
}


def emit_json(value: Any) -> None:
    data = orjson.dumps(to_jsonable(value), option=orjson.OPT_INDENT_2, default=_default)
    sys.stdout.write(data.decode() + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def styled(text: str) -> str:
    style = STATUS_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else text


def fmt_int(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def run_summary(steps: tuple[StepResult, ...], summary: dict[str, Any]) -> None:
    shown = [s for s in steps if s.status is not StepStatus.SKIPPED]
    if shown:
        _steps_table(shown)
    _details(steps)
    skipped = len(steps) - len(shown)
    if summary["status"] == "noop":
        out.print(
            f"[green]nothing to do[/]: all {len(steps)} tables are fresh "
            f"({summary['duration_s']:.3f}s)"
        )
    else:
        out.print(
            f"{styled(summary['status'])}: {summary['steps']} — "
            f"{summary['rows_written']:,} rows written, {summary['quarantined']:,} quarantined, "
            f"{summary['duration_s']:.2f}s" + (f"; {skipped} fresh, skipped" if skipped else "")
        )
    if summary["recovered_versions"]:
        out.print(f"[cyan]recovered[/] after a crash: {summary['recovered_versions']}")
    for sync in summary.get("online", []):
        out.print(
            f"online store: {sync['view']} v{sync['version']} ({sync['mode']}): "
            f"{sync['upserted']:,} entities written, {sync['deleted']:,} deleted, "
            f"{sync['rows']:,} online, {sync['duration_s']:.2f}s"
        )
    for evaluation in summary.get("monitors", []):
        evaluation_line(evaluation)


def write_output(path: Path, text: str) -> None:
    """Write a command's ``--out`` file, or say why it cannot be written."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="pass --out a path in a folder that exists and that you can write to",
        ) from None


def evaluation_line(e: dict[str, Any]) -> None:
    """One monitor evaluation: its state, why, and what its alert set off."""
    state = {
        "ok": "[green]ok[/]",
        "alert": "[bold red]ALERT[/]",
        "skipped": "[yellow]skipped[/]",
        "error": "[bold red]error[/]",
    }
    line = f"monitor {e['monitor']} ({e['type']}): {state.get(e['state'], e['state'])}"
    if e["error"] or e["skipped"]:
        line += f" — {escape(e['error'] or e['skipped'])}"
    elif e["state"] == "ok":
        line += f" — {e['rows']:,} rows, {e['findings']} statistics within thresholds"
    if e.get("engine") and e["engine"] != "duckdb":
        line += f" (on {e['engine']}: {escape(e['engine_reason'])})"
    out.print(line)
    for alert in e["alerts"][:6]:
        out.print(f"  {escape(alert)}")
    if len(e["alerts"]) > 6:
        out.print(f"  … and {len(e['alerts']) - 6} more")
    if e["action"] and e["action"] != "recorded":
        details = e["action_details"]
        out.print(
            f"  action: [bold]{e['action']}[/]"
            + (f" v{details['version']}" if "version" in details else "")
            + (f" — {escape(details['reason'])}" if details.get("reason") else "")
            + (f" — {escape(details['hint'])}" if details.get("hint") else "")
        )


def _steps_table(steps: list[StepResult]) -> None:
    table = Table(title="run summary", title_justify="left")
    for column in ("table", "status", "version", "rows", "added", "quarantined", "time", "note"):
        table.add_column(
            column,
            justify="right"
            if column in ("version", "rows", "added", "quarantined", "time")
            else "left",
        )
    for step in steps:
        note = step.reason
        if step.files:
            note = f"{len(step.files)} file(s): {', '.join(step.files[:3])}" + (
                " …" if len(step.files) > 3 else ""
            )
        if step.status is StepStatus.FAILED and step.error:
            note = "see error below"
        table.add_row(
            step.name,
            styled(step.status.value),
            "" if step.version is None else f"v{step.version}",
            fmt_int(step.rows),
            fmt_int(step.rows_added),
            fmt_int(step.quarantined) if step.quarantined else "",
            f"{step.duration_s:.2f}s" if step.status is StepStatus.SUCCESS else "",
            note,
        )
    out.print(table)


def _details(steps: tuple[StepResult, ...]) -> None:
    for step in steps:
        if step.quarantine_counts:
            counts = ", ".join(f"{c}: {n:,}" for c, n in step.quarantine_counts.items())
            out.print(
                f"  [yellow]quarantined[/] {step.name}: {counts} "
                f"(see `gristmill quarantine {step.name}`)"
            )
    for step in steps:
        for warning in step.warnings:
            err.print(f"[bold yellow]warning[/] in {step.name}: {escape(warning)}")
    for step in steps:
        if step.error:
            location = f"{step.error['location']}: " if step.error.get("location") else ""
            message = escape(location + step.error["message"])
            err.print(f"[bold red]error[/] in {step.name}: {message}")
            if step.error.get("hint"):
                err.print(f"  hint: {escape(step.error['hint'])}")


def engine_text(step: Any) -> str:
    """``spark (inputs 25.1 GB ≥ auto_threshold 20.0 GB)``: where a step runs and why."""
    fields = step if isinstance(step, dict) else step.__dict__
    engine, why = fields.get("engine"), fields.get("engine_reason")
    if not engine:
        return ""
    return f"{engine} ({why})" if why else engine


def plan_table(plan: Plan) -> None:
    table = Table(title="plan", title_justify="left")
    table.add_column("table")
    table.add_column("kind")
    table.add_column("action")
    table.add_column("reason")
    table.add_column("engine")
    for step in plan.steps:
        table.add_row(
            step.name,
            step.kind.value,
            styled("run" if step.action.value == "run" else "skipped"),
            step.reason,
            engine_text(step),
        )
    out.print(table)


def partition_plan(plan: Plan) -> None:
    """A backfill's plan: runs of neighbouring partitions with the same action and reason
    on one line each (365 fresh days are one line)."""
    step = plan.steps[0]
    table = Table(title=f"backfill plan: {step.name}", title_justify="left")
    table.add_column("partitions")
    table.add_column("count", justify="right")
    table.add_column("action")
    table.add_column("reason")
    groups: list[list[Any]] = []
    for task in step.partitions:
        reason = "fresh" if task.reason.startswith("fresh") else task.reason
        if groups and groups[-1][2] == task.action.value and groups[-1][3] == reason:
            groups[-1][1] = task.key
            groups[-1][4] += 1
        else:
            groups.append([task.key, task.key, task.action.value, reason, 1])
    for first, last, action, reason, count in groups:
        span = first if first == last else f"{first} … {last}"
        table.add_row(span, str(count), styled("run" if action == "build" else "skipped"), reason)
    out.print(table)
    todo = len(step.to_build)
    out.print(
        f"{todo} of {len(step.partitions)} partition(s) to build"
        + ("" if todo else ": nothing to do")
    )


def freshness_table(checks: list[Any]) -> None:
    from gristmill.workspace.watch import span as _age

    if not checks:
        out.print('no freshness checks: declare gm.freshness("table", max_age="26h")')
        return
    table = Table(title="freshness", title_justify="left")
    for column in ("name", "target", "state", "version", "age", "max_age", "refresh", "last alert"):
        table.add_column(column)
    for c in checks:
        alert = c.last_alert
        table.add_row(
            c.name,
            c.target,
            f"[{'green' if c.state == 'fresh' else 'red'}]{c.state}[/]",
            "" if c.version is None else f"v{c.version}",
            "" if c.age_s is None else _age(c.age_s),
            _age(c.max_age_s),
            "yes" if c.refresh else "",
            f"{fmt_time(alert['at'])}: {escape(alert['message'])}" if alert else "",
        )
    out.print(table)


def _decision(summary: Any) -> str:
    """A retrain run's gate decision, e.g. ``promoted v2`` (empty for other runs)."""
    retrain = (summary or {}).get("retrain") if isinstance(summary, dict) else None
    if not isinstance(retrain, dict):
        return ""
    version = f" v{retrain['version']}" if retrain.get("version") else ""
    reason = f" ({retrain['reason']})" if retrain.get("reason") else ""
    return f"{retrain.get('action')}{version}{reason}"


def run_header(info: Any) -> None:
    """One run's facts, one per line."""
    out.print(f"run [bold]{info.run_id}[/] ({styled(info.status)})")
    facts = [
        ("kind", info.kind),
        ("selection", info.selection or "everything"),
        ("full refresh", "yes" if info.full_refresh else ""),
        ("requested by", info.requested_by),
        ("priority", str(info.priority) if info.priority else ""),
        ("attempt", str(info.attempt) if info.attempt > 1 else ""),
        ("retry of", info.retry_of or ""),
        ("timeout", f"{info.timeout_s:g} s" if info.timeout_s else ""),
        ("not before", _when(info.not_before)),
        ("requested", _when(info.created_at)),
        ("started", _when(info.started_at)),
        ("finished", _when(info.finished_at)),
        ("owner", info.owner or ""),
        ("cancel asked", "yes" if info.cancel_requested else ""),
        ("decision", _decision(info.summary)),
        ("error", info.error or ""),
    ]
    for name, value in facts:
        if value:
            out.print(f"  {name:<13}{escape(value)}")


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def records(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, str):
        return styled(value) if value in STATUS_STYLE else escape(value)
    return escape(str(value))


def arrow(data: pa.Table, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for field in data.schema:
        table.add_column(f"{field.name}\n[dim]{field.type}[/]")
    for row in data.to_pylist():
        table.add_row(*("" if v is None else escape(str(v)) for v in row.values()))
    out.print(table)


def lineage(node: LineageNode, upstream: bool) -> None:
    tree = Tree(_label(node))
    _grow(tree, node)
    out.print(f"[dim]{'upstream (what it was built from)' if upstream else 'downstream'}[/]")
    out.print(tree)


def _label(node: LineageNode) -> str:
    version = "never built" if node.version is None else f"v{node.version}"
    return f"[bold]{node.name}[/] [dim]{node.kind}[/] {version}"


def _grow(tree: Tree, node: LineageNode) -> None:
    for child in node.inputs:
        _grow(tree.add(_label(child)), child)
    for path in node.files:
        tree.add(f"[dim]file[/] {path}")
