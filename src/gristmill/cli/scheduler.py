"""``gristmill scheduler``: the queue worked in the foreground, stopped cleanly by signals."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson
import typer

from gristmill.cli import render
from gristmill.errors import RunFailed
from gristmill.workspace.shapes import RunInfo, to_jsonable

if TYPE_CHECKING:
    from gristmill.workspace import Workspace


class _Stop:
    """The first SIGINT or SIGTERM asks to stop after the current run; the second cancels
    it (a KeyboardInterrupt, which closes the run as cancelled)."""

    def __init__(self) -> None:
        self.asked = threading.Event()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.asked.is_set():
            raise KeyboardInterrupt
        self.asked.set()
        render.err.print(
            f"{signal.Signals(signum).name}: stopping after the current run (again: cancel it)"
        )

    @contextmanager
    def installed(self) -> Iterator[_Stop]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve_queue(
    ws: Workspace,
    *,
    once: bool,
    interval: float,
    json: bool,
    metrics: tuple[str, int] | None = None,
    metrics_public: bool = False,
    decide: bool = True,
) -> None:
    """The service's loop with this edge's signals and printing; exit 1 after --once when
    a run did not succeed."""
    from gristmill.workspace.scheduler import serve

    quiet = json and once  # --once --json: one document at the end

    def report(kind: str, data: Any) -> None:
        if kind in ("reloaded", "reload_failed", "metrics"):
            render.err.print(data)
        elif kind == "undelivered":
            from gristmill.definitions.urls import redact

            render.err.print(f"on_failure {redact(data['url'])} was not delivered: {data['error']}")
        elif quiet:
            return
        elif kind == "tick":
            _report_tick(data, json)
        elif kind == "fired":
            _report_fired(data, json)
        elif kind == "alert":
            _report_alert(data, json)
        elif kind == "run":
            _report(data, json)

    with _Stop().installed() as stop:
        served = serve(
            ws,
            once=once,
            interval=interval,
            stop=stop.asked,
            report=report,
            metrics=metrics,
            metrics_public=metrics_public,
            decide=decide,
        )
    ran = served.ran
    if json and once:
        render.emit_json(
            {
                "queued_by_triggers": served.queued,
                "alerts": served.alerts,
                "ran": ran,
                "queued": len(ws.runs(10_000, status="queued")),
            }
        )
    elif once:
        waiting = len(ws.runs(10_000, status="queued"))
        running = ws.runs(1, status="running")
        note = f", {waiting} still queued" if waiting else ""
        if running:
            note += f" (run {running[0].run_id[:12]} is running elsewhere)"
        render.out.print(f"{len(ran)} run(s) done{note}")
    if once:
        failed = [r for r in ran if r.status in ("failed", "crashed", "timed_out", "cancelled")]
        if failed:
            if json:  # the document above says which
                raise typer.Exit(code=RunFailed.exit_code)
            raise RunFailed(
                f"{len(failed)} of the {len(ran)} run(s) did not succeed: "
                + ", ".join(f"{r.run_id[:12]} {r.status}" for r in failed),
                hint="`gristmill runs ID` and `gristmill runs ID --log` say why",
            )


def _report_tick(tick: dict[str, object], json_lines: bool) -> None:
    if json_lines:
        render.out.file.write(orjson.dumps(to_jsonable(tick)).decode() + "\n")
        render.out.file.flush()
        return
    at = tick["tick"]
    what = f"queued run [bold]{str(tick['run_id'])[:12]}[/]" if tick["run"] else "skipped"
    render.out.print(f"schedule {tick['schedule']} tick {at}: {what} ({tick['reason']})")


def _report_fired(fired: dict[str, object], json_lines: bool) -> None:
    if json_lines:
        render.out.file.write(orjson.dumps(to_jsonable(fired)).decode() + "\n")
        render.out.file.flush()
        return
    run = str(fired["run_id"])[:12]
    render.out.print(f"sensor {fired['sensor']}: queued run [bold]{run}[/] ({fired['reason']})")


def _report_alert(alert: dict[str, object], json_lines: bool) -> None:
    if json_lines:
        render.out.file.write(orjson.dumps(to_jsonable(alert)).decode() + "\n")
        render.out.file.flush()
        return
    queued = f"; queued run [bold]{str(alert['run_id'])[:12]}[/]" if alert.get("run_id") else ""
    if alert["kind"] == "deadline":
        queued = ""
    render.err.print(f"[yellow]{alert['kind']}[/] alert: {alert['message']}{queued}")


def _report(info: RunInfo, json_lines: bool) -> None:
    if json_lines:
        render.out.file.write(orjson.dumps(to_jsonable(info)).decode() + "\n")
        render.out.file.flush()
        return
    summary = info.summary or {}
    counts = summary.get("steps") or {}
    detail = ", ".join(f"{n} {status}" for status, n in counts.items())
    if summary.get("rows_written"):
        detail += f", {summary['rows_written']:,} rows written"
    decision = summary.get("retrain")
    if isinstance(decision, dict):  # what the gates decided matters more than the build
        version = f" v{decision['version']}" if decision.get("version") else ""
        detail = f"{decision.get('action')}{version}; {detail}" if detail else decision["action"]
    detail = f"({detail})" if detail else ""
    text = " ".join(part for part in (render.styled(info.status), detail) if part)
    error = f": {info.error}" if info.error else ""
    render.out.print(
        f"run [bold]{info.run_id[:12]}[/] {info.kind} {info.selection or 'everything'}: "
        f"{text}{error}"
    )


def follow_sources(
    ws: Workspace, sources: list[str], *, full_refresh: bool, idle_s: float, json: bool
) -> None:
    """``gristmill ingest --follow``: a line (or a JSON line) per extraction that read
    something or failed; exit 1 when a failure is not transient."""
    from gristmill.workspace.core import RunOutcome

    def report(outcome: RunOutcome) -> None:
        result = outcome.result
        if json:
            typer.echo(
                orjson.dumps(
                    to_jsonable(
                        {
                            "run_id": result.run_id,
                            "summary": outcome.summary(),
                            "steps": result.steps,
                        }
                    )
                ).decode()
            )
            return
        if result.status == "noop":
            return
        for step in result.steps:
            if step.error:
                render.err.print(f"{step.name}: failed: {step.error.get('message')}")
            elif step.status.value == "success":
                quarantined = f", {step.quarantined:,} quarantined" if step.quarantined else ""
                render.out.print(
                    f"{step.name} v{step.version}: +{step.rows_added or 0:,} rows{quarantined} "
                    f"({step.duration_s:.2f}s)"
                )

    with _Stop().installed() as stop:
        failed = ws.follow(
            sources, stop=stop.asked, report=report, idle_s=idle_s, full_refresh=full_refresh
        )
    if failed is not None:
        raise RunFailed(
            f"ingest stopped: {failed.result.error()}",
            hint="fix the cause and start it again; transient failures are retried by themselves",
        )
