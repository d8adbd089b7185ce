"""``gristmill scheduler``: the queue worked in the foreground, stopped cleanly by signals."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import orjson
import typer

from gristmill.cli import render
from gristmill.definitions.loader import definition_files
from gristmill.errors import GristmillError, RunFailed
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


def serve_queue(ws: Workspace, *, once: bool, interval: float, json: bool) -> None:
    ran: list[RunInfo] = []
    queued: list[dict[str, object]] = []  # runs queued by schedules' ticks and by sensors
    with _Stop().installed() as stop:
        try:
            _loop(ws, stop, once, interval, json, ran, queued)
        finally:
            ws.scheduler.resign()
    if json and once:
        render.emit_json(
            {
                "queued_by_triggers": queued,
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


def _loop(
    ws: Workspace,
    stop: _Stop,
    once: bool,
    interval: float,
    json: bool,
    ran: list[RunInfo],
    queued: list[dict[str, object]],
) -> None:
    ws.scheduler.interval = interval
    seen = definition_files(ws.project)
    while not stop.asked.is_set():
        if not once and definition_files(ws.project) != seen:
            seen = definition_files(ws.project)
            ws = _reload(ws)
        ws.scheduler.stop_overdue()  # runs past their timeout whose scheduler died
        for report in [*ws.scheduler.ticks_meanwhile, ws.scheduler.tick()]:
            for tick in report.decided:
                if tick["run"]:
                    queued.append(tick)
                if not (json and once):
                    _report_tick(tick, json)
            for fired in report.fired:
                queued.append(fired)
                if not (json and once):
                    _report_fired(fired, json)
        ws.scheduler.ticks_meanwhile = []
        if stop.asked.is_set():
            break
        finished = ws.scheduler.run_next()  # in a process of its own
        done = [finished] if finished is not None else []
        for info in done:
            ran.append(info)
            if not (json and once):  # --once --json: one document at the end
                _report(info, json)
            hook = ws.scheduler.notified
            if hook is not None and not hook["delivered"]:
                render.err.print(f"on_failure {hook['url']} was not delivered: {hook['error']}")
        if done:  # decide the schedules again, then the next queued run
            continue
        if once:
            break
        stop.asked.wait(interval)


def _reload(ws: Workspace) -> Workspace:
    """The project's definitions changed under a running scheduler: load them again (a
    project that no longer loads keeps the scheduler on the definitions it had)."""
    from gristmill.workspace import Workspace

    try:
        fresh = Workspace.open(ws.root)
    except GristmillError as exc:
        render.err.print(f"the project does not load any more, keeping its last definitions: {exc}")
        return ws
    fresh.scheduler.interval = ws.scheduler.interval
    render.err.print("the project's definitions changed: loaded them again")
    return fresh


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
    detail = f"({detail})" if detail else ""
    text = " ".join(part for part in (render.styled(info.status), detail) if part)
    error = f": {info.error}" if info.error else ""
    render.out.print(
        f"run [bold]{info.run_id[:12]}[/] {info.kind} {info.selection or 'everything'}: "
        f"{text}{error}"
    )
