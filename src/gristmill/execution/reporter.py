"""How the runner tells the outside what happens; core code never prints.

The CLI passes a rich reporter, the API a collecting one, tests the null one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gristmill.planning import Plan


class StepStatus(StrEnum):
    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StepResult:
    name: str
    kind: str
    status: StepStatus
    reason: str
    version: int | None = None
    mode: str | None = None
    rows: int | None = None
    rows_added: int | None = None
    quarantined: int = 0
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    duration_s: float = 0.0
    error: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    """What the user should know although the step succeeded (e.g. a skewed time split)."""


class Reporter(Protocol):
    def plan_ready(self, plan: Plan) -> None: ...
    def step_started(self, name: str, reason: str) -> None: ...
    def step_finished(self, result: StepResult) -> None: ...


class NullReporter:
    def plan_ready(self, plan: Plan) -> None:
        pass

    def step_started(self, name: str, reason: str) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass


class LogReporter:
    """One timestamped line per event, for a run's log file (what the scheduler keeps)."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self._write(f"{stamp} {text}\n")

    def plan_ready(self, plan: Plan) -> None:
        todo = [s.name for s in plan.to_run]
        self._line(f"plan: {len(todo)} step(s) to run of {len(plan.steps)}: {', '.join(todo)}")

    def step_started(self, name: str, reason: str) -> None:
        self._line(f"start {name}: {reason}")

    def step_finished(self, result: StepResult) -> None:
        if result.status is StepStatus.SKIPPED:
            return
        detail = f" v{result.version}, {result.rows:,} rows" if result.rows is not None else ""
        if result.quarantined:
            detail += f", {result.quarantined:,} quarantined"
        self._line(f"{result.status.value} {result.name}{detail} in {result.duration_s:.2f}s")
        if result.error:
            self._line(f"  error: {result.error.get('message')}")
            if result.error.get("hint"):
                self._line(f"  hint: {result.error['hint']}")
        for warning in result.warnings:
            self._line(f"  warning: {warning}")
