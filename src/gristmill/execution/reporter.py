"""How the runner tells the outside what happens; core code never prints.

The CLI passes a rich reporter, the API a collecting one, tests the null one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
