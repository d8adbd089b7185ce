"""Which ticks of a schedule run: a pure decision, like the step planner's.

Given a schedule, the time up to which it was last evaluated (its cursor) and now, each
tick in between gets a decision (run it or not) and the reason; the scheduler stores the
decisions and queues the runs in one transaction, so a tick is decided once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gristmill.definitions.schedules import ON_TIME, Catchup, Schedule


@dataclass(frozen=True)
class TickDecision:
    schedule: str
    at: datetime
    """The tick's time, in UTC."""
    run: bool
    reason: str


def decide_ticks(schedule: Schedule, cursor: datetime | None, now: datetime) -> list[TickDecision]:
    """The ticks in ``(cursor, now]`` that are within the catch-up window, oldest first.

    A schedule seen for the first time (no cursor) starts now: it does not run the ticks
    of its past. Ticks older than the catch-up window are left out (the cursor passes them).
    """
    if cursor is None or cursor >= now:
        return []
    oldest = now - schedule.catchup_window
    due = list(schedule.ticks(max(cursor, oldest), now))
    decisions = []
    for i, at in enumerate(due):
        newest = i == len(due) - 1
        late = now - at > ON_TIME
        if not late:
            run, reason = True, "on time"
        elif schedule.catchup is Catchup.ALL:
            run, reason = True, f"missed by {_ago(now - at)}, caught up (catchup all)"
        elif schedule.catchup is Catchup.LATEST and newest:
            run, reason = True, f"missed by {_ago(now - at)}, the newest runs (catchup latest)"
        elif schedule.catchup is Catchup.LATEST:
            run, reason = False, "missed, a newer tick runs instead (catchup latest)"
        else:
            run, reason = False, "missed (catchup skip)"
        decisions.append(TickDecision(schedule.name, at, run, reason))
    return decisions


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
