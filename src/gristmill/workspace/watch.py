"""Freshness and deadlines, checked by the scheduler's leader at every tick.

A table (or model) declared with ``gm.freshness`` is stale when its newest version is older
than ``max_age``: one alert per stale version (a notice in the catalog, keyed by the
version, so two schedulers or a restarted one never send it twice), POSTed to its webhook,
and separately, with ``refresh=True``, a queued build of ``+target``. A schedule with a
``deadline`` is late when a tick's run (its last attempt) has not finished successfully
``deadline`` after the tick: one alert per tick, to its ``on_failure`` URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gristmill.definitions.freshness import Freshness
from gristmill.errors import UnknownNameError
from gristmill.storage.catalog.records import utcnow
from gristmill.storage.catalog.runs import RunRequest

if TYPE_CHECKING:
    from gristmill.definitions.schedules import Schedule
    from gristmill.workspace.core import Workspace

LOOKBACK = timedelta(days=2)
"""How far past a deadline a tick is still checked (a scheduler down longer stays quiet)."""
DONE = ("success", "noop")


@dataclass(frozen=True)
class FreshnessInfo:
    name: str
    target: str
    max_age_s: float
    state: str
    """``fresh``, ``stale`` or ``never_built``."""
    version: int | None
    built_at: datetime | None
    age_s: float | None
    refresh: bool
    webhook: bool
    """Whether alerts go to a webhook (its URL is not shown: it may hold a token)."""
    last_alert: dict[str, Any] | None
    defined_at: str


class Watch:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # ---- freshness ---------------------------------------------------------------------

    def freshness(self, now: datetime | None = None) -> list[FreshnessInfo]:
        now = now or utcnow()
        return [self._info(c, now) for c in self.ws.project.freshness.values()]

    def one(self, name: str) -> FreshnessInfo:
        check = self.ws.project.freshness.get(name)
        if check is None:
            raise UnknownNameError("freshness check", name, list(self.ws.project.freshness))
        return self._info(check, utcnow())

    def _info(self, check: Freshness, now: datetime) -> FreshnessInfo:
        last = self.ws.catalog.latest(check.target)
        age = (now - last.finished_at).total_seconds() if last else None
        if last is None:
            state = "never_built"
        else:
            state = "stale" if age is not None and age > check.max_age.total_seconds() else "fresh"
        notice = self.ws.catalog.schedule_store.latest_notice("freshness", check.name)
        return FreshnessInfo(
            name=check.name,
            target=check.target,
            max_age_s=check.max_age.total_seconds(),
            state=state,
            version=last.version if last else None,
            built_at=last.finished_at if last else None,
            age_s=age,
            refresh=check.refresh,
            webhook=check.webhook is not None,
            last_alert=(
                {"at": notice.at, "message": notice.message, **notice.details} if notice else None
            ),
            defined_at=str(check.location),
        )

    def check(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Alert (and refresh) what went stale, and the runs late for their deadline, each
        once; the alerts sent now."""
        now = now or utcnow()
        sent = [self._stale(c, now) for c in self.ws.project.freshness.values()]
        for schedule in self.ws.project.schedules.values():
            if schedule.deadline is not None:
                sent += self._late(schedule, schedule.deadline, now)
        return [a for a in sent if a is not None]

    def _stale(self, check: Freshness, now: datetime) -> dict[str, Any] | None:
        info = self._info(check, now)
        if info.state == "fresh":
            return None
        if info.version is None:
            message = f"{check.target} has never been built (max_age {span(info.max_age_s)})"
        else:
            assert info.age_s is not None
            message = (
                f"{check.target} v{info.version} is {span(info.age_s)} old, more than its "
                f"max_age of {span(info.max_age_s)}"
            )
        store = self.ws.catalog.schedule_store
        key = f"freshness:{check.name}:{info.version if info.version is not None else 'none'}"
        notice = store.notify_once(key, "freshness", check.name, message, {})
        if notice is None:
            return None  # told already about this version
        details: dict[str, Any] = {}
        if check.refresh:
            queued = self.ws.coordinator.enqueue(
                RunRequest(
                    kind="build",
                    selection=f"+{check.target}",
                    full_refresh=False,
                    # forced: a refresh rebuilds the target even if its inputs did not move
                    params={
                        "select": [f"+{check.target}"],
                        "force": [check.target],
                        "freshness": check.name,
                    },
                    requested_by=f"freshness:{check.name}",
                )
            )
            details["run_id"] = queued.run_id
        if check.webhook is not None:
            details["delivered"] = _post(
                check.webhook,
                {
                    "freshness": check.name,
                    "target": check.target,
                    "message": message,
                    "version": info.version,
                    "age_s": info.age_s,
                    **details,
                },
            )
        self._settle(key, details)
        return {"kind": "freshness", "subject": check.name, "message": message, **details}

    # ---- deadlines ---------------------------------------------------------------------

    def _late(
        self, schedule: Schedule, deadline: timedelta, now: datetime
    ) -> list[dict[str, Any] | None]:
        store = self.ws.catalog.schedule_store
        runs = self.ws.catalog.run_store
        out: list[dict[str, Any] | None] = []
        for tick in store.ticks_since(schedule.name, now - deadline - LOOKBACK):
            due = tick.at + deadline
            if due > now or tick.run_id is None:
                continue
            run = runs.last_attempt(tick.run_id)
            finished = run.finished_at
            if run.status in DONE and finished is not None and finished <= due:
                continue
            local = due.astimezone(schedule.zone).strftime("%Y-%m-%d %H:%M %Z")
            if run.status in DONE:
                message = (
                    f"{schedule.name}: the run of its {_tick(tick.at, schedule)} tick "
                    f"finished after its deadline ({local})"
                )
            else:
                message = (
                    f"{schedule.name}: the run of its {_tick(tick.at, schedule)} tick "
                    f"was not finished by its deadline ({local}): it is {run.status}"
                )
            key = f"deadline:{schedule.name}:{tick.at.isoformat()}"
            notice = store.notify_once(
                key, "deadline", schedule.name, message, {"run_id": run.run_id}
            )
            if notice is None:
                continue
            details: dict[str, Any] = {"run_id": run.run_id, "status": run.status}
            if schedule.on_failure is not None:
                details["delivered"] = _post(
                    schedule.on_failure,
                    {"schedule": schedule.name, "deadline": due, "message": message, **details},
                )
            self._settle(key, details)
            out.append(
                {"kind": "deadline", "subject": schedule.name, "message": message, **details}
            )
        return out

    def _settle(self, key: str, details: dict[str, Any]) -> None:
        from sqlalchemy import update

        from gristmill.storage.catalog import schema as s

        with self.ws.catalog._write() as conn:
            conn.execute(update(s.notices).where(s.notices.c.key == key).values(details=details))


def _post(url: str, event: dict[str, Any]) -> bool:
    from gristmill.serving.webhook import Webhook

    hook = Webhook(url, timeout_s=5.0, retries=2)
    hook.send(event)
    hook.close()
    return hook.sent == 1


def _tick(at: datetime, schedule: Schedule) -> str:
    return at.astimezone(schedule.zone).strftime("%Y-%m-%d %H:%M")


def span(seconds: float) -> str:
    """A duration as people say it: 45s, 20m, 2h, 1.5h, 3d."""

    def short(value: float, unit: str) -> str:
        return f"{value:.1f}".rstrip("0").rstrip(".") + unit

    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return short(seconds / 3600, "h")
    return short(seconds / 86400, "d")
