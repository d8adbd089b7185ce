"""The scheduler as the CLI (and later the UI) sees it: schedules, and one tick.

A tick decides the due ticks of every schedule (only the leader does: one per catalog,
by a lease in the catalog) and queues their runs; working the queue is ``Workspace.work``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gristmill.definitions.schedules import Schedule
from gristmill.errors import UnknownNameError
from gristmill.execution.coordinator import _host, owner_alive, this_owner
from gristmill.planning.schedules import TickDecision, decide_ticks
from gristmill.storage.catalog.records import RunRecord, utcnow
from gristmill.storage.catalog.runs import RunRequest

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace
    from gristmill.workspace.shapes import RunInfo

POLL_S = 0.1
STOP_GRACE_S = 60.0
"""How long a run process asked to stop (Ctrl-C) may take before it is killed."""
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

    def run_next(self) -> RunInfo | None:
        """Take the next queued run and run it in a process of its own; the run as it
        ended, or None when there was nothing to run.

        A run past its timeout has its process tree killed and is closed as
        ``timed_out``; a process that dies leaves its run to be closed as ``crashed``.
        Ctrl-C here (a KeyboardInterrupt) is passed on to the run's process, which closes
        its run as cancelled, and then raised.
        """
        store = self.ws.catalog.run_store
        self.ws.coordinator.close_abandoned()  # a dead owner's run must not block the queue
        if not store.runnable():
            return None
        with tempfile.TemporaryFile() as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "gristmill.workspace.worker", str(self.ws.root)],
                stdout=out,
                start_new_session=True,  # its own process group: stopped as a whole
            )
            try:
                claimed = self._supervise(child)
            except KeyboardInterrupt:
                _signal_group(child, signal.SIGINT)
                try:
                    child.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal_group(child, signal.SIGKILL)
                    child.wait()
                raise
            out.seek(0)
            run_id = out.read().decode().strip() or (claimed.run_id if claimed else "")
        if child.returncode != 0:
            self.ws.coordinator.close_abandoned()  # a dead run process: its run crashed
        if not run_id:
            return None
        info = self.ws.run_info(run_id)
        self.notified = self._notify_failure(info)
        return info

    notified: dict[str, Any] | None = None
    """The last run's ``on_failure`` delivery: url, delivered, error (None: nothing sent)."""

    def _notify_failure(self, info: RunInfo) -> dict[str, Any] | None:
        """POST a scheduled run's final failure to its schedule's ``on_failure`` URL (not
        an attempt that will be retried)."""
        schedule = self.ws.project.schedules.get(str(info.params.get("schedule", "")))
        if schedule is None or schedule.on_failure is None:
            return None
        if info.status not in ("failed", "crashed", "timed_out"):
            return None
        if self.ws.catalog.run_store.retried(info.run_id):
            return None
        from gristmill.serving.webhook import Webhook

        hook = Webhook(schedule.on_failure, timeout_s=5.0, retries=2)
        hook.send(
            {
                "schedule": schedule.name,
                "run_id": info.run_id,
                "status": info.status,
                "error": info.error,
                "attempt": info.attempt,
                "tick": info.params.get("tick"),
                "started_at": info.started_at,
                "finished_at": info.finished_at,
            }
        )
        hook.close()
        return {
            "url": schedule.on_failure,
            "delivered": hook.sent == 1,
            "error": hook.last_error if hook.failed else "",
        }

    def _supervise(self, child: subprocess.Popen[bytes]) -> RunRecord | None:
        """Wait for the run process; stop it at its run's timeout."""
        store = self.ws.catalog.run_store
        claimed: RunRecord | None = None
        while child.poll() is None:
            if claimed is None:
                claimed = store.owned_by_process(_host(), child.pid)
            elif claimed.timeout_s is not None and claimed.started_at is not None:
                ran = (utcnow() - claimed.started_at).total_seconds()
                if ran > claimed.timeout_s:
                    _signal_group(child, signal.SIGKILL)
                    child.wait()
                    assert claimed.owner is not None
                    store.finish(
                        claimed.run_id,
                        claimed.owner,
                        "timed_out",
                        error=f"ran past its timeout of {_span(claimed.timeout_s)}: its "
                        "processes were stopped",
                    )
                    return claimed
            try:
                child.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
        return claimed

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


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
