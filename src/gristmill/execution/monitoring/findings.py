"""What one monitor evaluation found: a value per subject and statistic, and its state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    OK = "ok"
    ALERT = "alert"
    SKIPPED = "skipped"
    """Nothing to judge: too few rows, no champion yet, no labels arrived."""
    ERROR = "error"
    """The evaluation could not run (a table it reads is missing, a query failed): the
    reason says what to do; it is tried again on the next run."""


@dataclass(frozen=True)
class Finding:
    subject: str
    """A feature, ``score``, a metric's name, or ``table``."""
    statistic: str
    value: float | None
    threshold: float | None = None
    above_alerts: bool = True
    """True: a value above the threshold alerts; False: one below it (p-values, metrics)."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> State:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return State.SKIPPED
        if self.threshold is None:
            return State.OK
        crossed = self.value > self.threshold if self.above_alerts else self.value < self.threshold
        return State.ALERT if crossed else State.OK

    def describe(self) -> str:
        side = ">" if self.above_alerts else "<"
        return f"{self.subject} {self.statistic} = {self.value:.4g} ({side} {self.threshold:g})"


@dataclass(frozen=True)
class Outcome:
    """One evaluation of one monitor."""

    findings: list[Finding]
    window_start: datetime | None = None
    window_end: datetime | None = None
    rows: int = 0
    model_version: int | None = None
    skipped: str = ""
    """Why nothing could be judged (empty when something was)."""
    error: str = ""
    """Why the evaluation could not run (empty when it ran)."""
    charts: dict[str, Any] = field(default_factory=dict)
    """Histograms of reference and current per subject, for the report."""
    engine: str = ""
    """Where the statistics were computed, and why there (drift monitors)."""
    engine_reason: str = ""

    @property
    def state(self) -> State:
        if self.error:
            return State.ERROR
        if self.skipped:
            return State.SKIPPED
        return State.ALERT if self.alerts else State.OK

    @property
    def alerts(self) -> list[Finding]:
        return [f for f in self.findings if f.state is State.ALERT]


def skipped(reason: str, **kwargs: Any) -> Outcome:
    return Outcome(findings=[], skipped=reason, **kwargs)


def failed(reason: str) -> Outcome:
    return Outcome(findings=[], error=reason)
