"""Monitor commands: run, status, history, alerts, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gristmill.cli.app import JsonOpt, ProjectOpt, _open, app
from gristmill.cli.render import emit_json, evaluation_line, out, records, write_output
from gristmill.errors import RunFailed

monitor_app = typer.Typer(
    help="Drift, performance and data-quality monitors.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("run")
def run(
    names: Annotated[list[str] | None, typer.Argument(help="Monitors (default: all).")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Evaluate monitors now: store their values, record alerts, run their triggers."""
    evaluations = _open(project).monitors.run(names or None, run_triggered=True)
    if json:
        emit_json([e.to_dict() for e in evaluations])
    else:
        for e in evaluations:
            evaluation_line(e.to_dict())
    failed = [e.monitor for e in evaluations if e.error]
    if failed:  # alerts are findings, not failures; a monitor that could not run is
        if json:
            raise typer.Exit(code=RunFailed.exit_code)
        raise RunFailed(
            f"{len(failed)} monitor(s) could not be evaluated: {', '.join(failed)}",
            hint="each one's reason is above; they are tried again on the next run",
        )


@monitor_app.command("status")
def status(project: ProjectOpt = None, json: JsonOpt = False) -> None:
    """Each monitor: its last state, the value nearest its threshold, and its trend."""
    found = _open(project).monitors.status()
    if json:
        return emit_json([s.to_dict() for s in found])
    rows = [
        {
            "monitor": s.monitor,
            "type": s.type,
            "watches": s.subject,
            "state": s.state,
            "last": s.evaluated_at,
            "headline": s.summary,
            "trend": _spark(s.trend),
            "alerts": s.alerts,
        }
        for s in found
    ]
    records(
        "monitors",
        rows,
        ["monitor", "type", "watches", "state", "last", "headline", "trend", "alerts"],
    )


@monitor_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Monitor name.")],
    subject: Annotated[str | None, typer.Option(help="Only this feature or metric.")] = None,
    statistic: Annotated[str | None, typer.Option(help="Only this statistic, e.g. psi.")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """A monitor's stored values over time (monitor, window, statistic, value, state)."""
    rows = _open(project).monitors.results(name, subject=subject, statistic=statistic)
    if json:
        return emit_json([{k: v for k, v in r.__dict__.items() if k != "details"} for r in rows])
    records(
        f"{name}: {len(rows)} values",
        [r.__dict__ for r in rows],
        ["evaluated_at", "window_end", "subject", "statistic", "value", "threshold", "state"],
    )


@monitor_app.command("alerts")
def alerts(
    name: Annotated[str | None, typer.Argument(help="Monitor (default: all).")] = None,
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """Alerts raised, with what followed (recorded, promoted, pending, kept, failed)."""
    found = _open(project).monitors.alerts(name)
    if json:
        return emit_json([a.__dict__ for a in found])
    records("alerts", [a.__dict__ for a in found], ["at", "monitor", "action", "message"])


@monitor_app.command("report")
def report(
    service: Annotated[str, typer.Argument(help="Service name.")],
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path(
        "report.html"
    ),
    project: ProjectOpt = None,
    json: JsonOpt = False,
) -> None:
    """A self-contained HTML report: drift per feature over time, distributions,
    performance over time and alerts (works offline)."""
    html = _open(project).monitors.report(service)
    write_output(out_file, html)
    if json:
        return emit_json({"service": service, "path": str(out_file), "bytes": len(html)})
    out.print(f"wrote {out_file} ({len(html):,} bytes)")


def _spark(values: list[float | None]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    return "".join(" " if v is None else bars[int((v - lo) / span * 7)] for v in values)
