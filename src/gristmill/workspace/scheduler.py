"""The scheduler as the CLI (and later the UI) sees it: schedules, and one tick.

A tick decides the due ticks of every schedule (only the leader does: one per catalog,
by a lease in the catalog) and queues their runs; working the queue is ``Workspace.work``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gristmill.definitions.schedules import Schedule
from gristmill.errors import UnknownNameError
from gristmill.execution.coordinator import owner_alive, this_owner
from gristmill.planning.schedules import TickDecision, decide_ticks
from gristmill.storage.catalog.records import utcnow
from gristmill.storage.catalog.runs import RunRequest

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace

LEADER = "scheduler"
LEADER_LEASE = timedelta(seconds=30)
"""A leader that stops renewing is replaced after this (a dead one on its host at once)."""


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    cron: str
    timezone: str
    select: list[str]
    catchup: str
    catchup_window_s: float
    timeout_s: float | None
    retries: int
    next_ticks: list[datetime]
    """The next three ticks, in the schedule's zone."""
    last_tick: dict[str, Any] | None
    """The newest decided tick: when, whether it ran and why, its run and that run's status."""
    defined_at: str


@dataclass(frozen=True)
class TickReport:
    leader: bool
    """Whether this process decided the schedules (else ``held_by`` did)."""
    held_by: str | None
    decided: list[dict[str, Any]] = field(default_factory=list)


class Scheduler:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.owner = this_owner()

    @property
    def _store(self) -> Any:
        return self.ws.catalog.schedule_store

    def list(self, now: datetime | None = None) -> list[ScheduleInfo]:
        now = now or utcnow()
        return [self._info(s, now) for s in self.ws.project.schedules.values()]

    def get(self, name: str) -> ScheduleInfo:
        found = self.ws.project.schedules.get(name)
        if found is None:
            raise UnknownNameError("schedule", name, list(self.ws.project.schedules))
        return self._info(found, utcnow())

    def tick(self, now: datetime | None = None) -> TickReport:
        """Decide every schedule's due ticks and queue their runs, if this is the leader."""
        held_by = self._store.acquire(LEADER, self.owner, LEADER_LEASE, owner_alive)
        if held_by is not None:
            return TickReport(leader=False, held_by=held_by)
        now = now or utcnow()
        cursors = self._store.cursors()
        decided: list[dict[str, Any]] = []
        for schedule in self.ws.project.schedules.values():
            decisions = decide_ticks(schedule, cursors.get(schedule.name), now)
            stored = self._store.decide(
                schedule.name,
                decisions,
                now,
                lambda d, s=schedule: _request(s, d),
                lambda: uuid.uuid4().hex,
            )
            decided += [
                {
                    "schedule": t.schedule,
                    "tick": t.at,
                    "run": t.run,
                    "reason": t.reason,
                    "run_id": t.run_id,
                }
                for t in stored
            ]
        return TickReport(leader=True, held_by=None, decided=decided)

    def resign(self) -> None:
        """Hand the leadership back at once (a daemon that stops)."""
        self._store.release(LEADER, self.owner)

    def _info(self, schedule: Schedule, now: datetime) -> ScheduleInfo:
        last = self._store.ticks(schedule.name, limit=1)
        last_tick = None
        if last:
            tick = last[0]
            status = None
            if tick.run_id is not None:
                status = self.ws.catalog.run_store.get(tick.run_id).status
            last_tick = {
                "at": tick.at.astimezone(schedule.zone),
                "ran": tick.run,
                "reason": tick.reason,
                "run_id": tick.run_id,
                "status": status,
            }
        return ScheduleInfo(
            name=schedule.name,
            cron=schedule.cron,
            timezone=schedule.timezone,
            select=list(schedule.select),
            catchup=schedule.catchup.value,
            catchup_window_s=schedule.catchup_window.total_seconds(),
            timeout_s=schedule.timeout.total_seconds() if schedule.timeout else None,
            retries=schedule.retries.attempts if schedule.retries else 0,
            next_ticks=[t.astimezone(schedule.zone) for t in schedule.next_ticks(now, 3)],
            last_tick=last_tick,
            defined_at=str(schedule.location),
        )


def _request(schedule: Schedule, decision: TickDecision) -> RunRequest:
    return RunRequest(
        kind="build",
        selection=" ".join(schedule.select),
        full_refresh=schedule.full_refresh,
        params={
            "select": list(schedule.select),
            "schedule": schedule.name,
            "tick": decision.at.isoformat(),
        },
        requested_by=f"schedule:{schedule.name}",
        timeout_s=schedule.timeout.total_seconds() if schedule.timeout else None,
    )
