"""A rich progress display for runs, written to stderr so stdout stays clean."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from gristmill.cli.render import err, styled
from gristmill.execution.reporter import StepResult, StepStatus

if TYPE_CHECKING:
    from gristmill.planning import Plan


class RichReporter:
    """Shows an overall bar plus a spinner per running step; logs each finished step."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self._overall: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def plan_ready(self, plan: Plan) -> None:
        with self._lock:
            self._overall = self._progress.add_task("steps", total=len(plan.to_run) or 1)
            if plan.is_noop:
                self._progress.update(self._overall, completed=1)

    def step_started(self, name: str, reason: str) -> None:
        with self._lock:
            self._tasks[name] = self._progress.add_task(f"{name} [dim]({reason})[/]", total=None)

    def step_finished(self, result: StepResult) -> None:
        with self._lock:
            task = self._tasks.pop(result.name, None)
            if task is not None:
                self._progress.remove_task(task)
            if result.status is StepStatus.SKIPPED:
                return
            if self._overall is not None:
                self._progress.advance(self._overall)
            detail = ""
            if result.status is StepStatus.SUCCESS:
                detail = (
                    f"v{result.version}, {result.rows:,} rows" if result.rows is not None else ""
                )
                if result.files:
                    detail += f", ingested {len(result.files)} file(s)"
                if result.quarantined:
                    detail += f", [yellow]{result.quarantined:,} quarantined[/]"
            elif result.status in (StepStatus.BLOCKED, StepStatus.CANCELLED):
                detail = result.reason
            self._progress.console.print(
                f"  {styled(result.status.value):>10} {result.name} [dim]{detail}[/]"
            )
