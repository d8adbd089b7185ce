"""What queues runs by itself — schedules' decided ticks, sensors' cursors — and named
leases (the scheduler's leader).

A tick is decided once: its row is unique on (schedule, tick time) and the run it queues
is inserted in the same transaction as the row and the schedule's new cursor, so a
scheduler killed at any moment neither runs a tick twice nor loses one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import as_utc, utcnow
from gristmill.storage.catalog.runs import QUEUED, RunRequest, _new_row

if TYPE_CHECKING:
    from gristmill.planning.schedules import TickDecision
    from gristmill.storage.catalog.store import Catalog


@dataclass(frozen=True)
class SensorState:
    sensor: str
    cursor: str
    evaluated_at: datetime
    fired: bool
    """Whether its last evaluation queued a run."""
    reason: str
    run_id: str | None
    """The last run it queued (kept when later evaluations do not fire)."""
    fired_at: datetime | None


@dataclass(frozen=True)
class Notice:
    """An alert the scheduler sent: a stale table, a run late for its deadline."""

    key: str
    kind: str
    subject: str
    at: datetime
    message: str
    details: dict[str, Any]


@dataclass(frozen=True)
class TickRecord:
    schedule: str
    at: datetime
    decided_at: datetime
    run: bool
    reason: str
    run_id: str | None


class ScheduleStore:
    """The catalog's ``schedule_store``."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def cursors(self) -> dict[str, datetime]:
        t = s.schedule_state
        with self._catalog._read() as conn:
            return {
                row.schedule: as_utc(row.cursor)  # type: ignore[misc]
                for row in conn.execute(select(t.c.schedule, t.c.cursor))
            }

    def decide(
        self,
        schedule: str,
        decisions: Sequence[TickDecision],
        cursor: datetime,
        request: Callable[[TickDecision], RunRequest],
        new_id: Callable[[], str],
    ) -> list[TickRecord]:
        """Store the decisions, queue a run for each that runs, move the cursor: at once.

        A tick already decided (by a scheduler that died after deciding it, or a peer) is
        left as it was; the ticks newly decided are returned.
        """
        t, st = s.schedule_ticks, s.schedule_state
        now = utcnow()
        with self._catalog.run_store._claiming() as conn:
            known = (
                {
                    as_utc(at)
                    for (at,) in conn.execute(
                        select(t.c.tick_at).where(
                            t.c.schedule == schedule,
                            t.c.tick_at.in_([d.at for d in decisions]),
                        )
                    )
                }
                if decisions
                else set()
            )
            stored = []
            for decision in decisions:
                if decision.at in known:
                    continue
                run_id = new_id() if decision.run else None
                if run_id is not None:
                    conn.execute(
                        insert(s.runs).values(**_new_row(run_id, request(decision), QUEUED))
                    )
                conn.execute(
                    insert(t).values(
                        schedule=schedule,
                        tick_at=decision.at,
                        decided_at=now,
                        run=decision.run,
                        reason=decision.reason,
                        run_id=run_id,
                    )
                )
                stored.append(
                    TickRecord(schedule, decision.at, now, decision.run, decision.reason, run_id)
                )
            moved = conn.execute(
                update(st).where(st.c.schedule == schedule).values(cursor=cursor, updated_at=now)
            )
            if not moved.rowcount:
                conn.execute(insert(st).values(schedule=schedule, cursor=cursor, updated_at=now))
            return stored

    def ticks(self, schedule: str, limit: int = 10) -> list[TickRecord]:
        """The newest decided ticks of a schedule, newest first."""
        t = s.schedule_ticks
        query = select(t).where(t.c.schedule == schedule).order_by(t.c.tick_at.desc()).limit(limit)
        with self._catalog._read() as conn:
            return [_tick(row) for row in conn.execute(query).mappings()]

    def ticks_since(self, schedule: str, since: datetime) -> list[TickRecord]:
        """The ticks of a schedule at or after ``since`` that queued a run, oldest first."""
        t = s.schedule_ticks
        query = (
            select(t)
            .where(t.c.schedule == schedule, t.c.tick_at >= since, t.c.run.is_(True))
            .order_by(t.c.tick_at)
            .limit(1000)
        )
        with self._catalog._read() as conn:
            return [_tick(row) for row in conn.execute(query).mappings()]

    # ---- notices ----------------------------------------------------------------------

    def notify_once(
        self, key: str, kind: str, subject: str, message: str, details: dict[str, Any]
    ) -> Notice | None:
        """Record a notice under ``key``; None when one was recorded already (by this or
        another scheduler): whoever records it sends it, so it is sent once."""
        n = s.notices
        notice = Notice(key, kind, subject, utcnow(), message, details)
        try:
            with self._catalog._write() as conn:
                conn.execute(insert(n).values(**notice.__dict__))
        except IntegrityError:  # the key is taken: sent already
            return None
        return notice

    def latest_notice(self, kind: str, subject: str) -> Notice | None:
        n = s.notices
        query = (
            select(n)
            .where(n.c.kind == kind, n.c.subject == subject)
            .order_by(n.c.at.desc())
            .limit(1)
        )
        with self._catalog._read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        data = dict(row)
        data["at"] = as_utc(data["at"])
        data["details"] = data["details"] or {}
        return Notice(**data)

    # ---- sensors ----------------------------------------------------------------------

    def sensor_states(self) -> dict[str, SensorState]:
        t = s.sensor_state
        with self._catalog._read() as conn:
            return {
                row["sensor"]: SensorState(
                    row["sensor"],
                    row["cursor"],
                    as_utc(row["evaluated_at"]),  # type: ignore[arg-type]
                    bool(row["fired"]),
                    row["reason"],
                    row["run_id"],
                    as_utc(row["fired_at"]),
                )
                for row in conn.execute(select(t)).mappings()
            }

    def record_sensor(
        self,
        sensor: str,
        cursor: str,
        reason: str,
        run: tuple[str, RunRequest] | None,
    ) -> SensorState:
        """Store an evaluation; with ``run`` (its id and request) queue it in the same
        transaction, so a fired sensor's run exists exactly when its cursor moved."""
        t = s.sensor_state
        now = utcnow()
        values: dict[str, object] = {
            "cursor": cursor,
            "evaluated_at": now,
            "fired": run is not None,
            "reason": reason,
        }
        if run is not None:
            values.update(run_id=run[0], fired_at=now)
        with self._catalog.run_store._claiming() as conn:
            if run is not None:
                conn.execute(insert(s.runs).values(**_new_row(run[0], run[1], QUEUED)))
            moved = conn.execute(update(t).where(t.c.sensor == sensor).values(**values))
            if not moved.rowcount:
                conn.execute(insert(t).values(sensor=sensor, **values))
            row = conn.execute(select(t).where(t.c.sensor == sensor)).mappings().one()
        return SensorState(
            sensor,
            cursor,
            now,
            run is not None,
            reason,
            row["run_id"],
            as_utc(row["fired_at"]),
        )

    # ---- named leases -----------------------------------------------------------------

    def acquire(
        self, name: str, owner: str, duration: timedelta, alive: Callable[[str], bool]
    ) -> str | None:
        """Take or renew the lease ``name`` for ``owner``; None when taken, else the owner
        that holds it (live, with time left)."""
        lease = s.leases
        now = utcnow()
        with self._catalog.run_store._claiming() as conn:
            row = conn.execute(select(lease).where(lease.c.name == name)).mappings().first()
            if row is not None and row["owner"] != owner:
                until = as_utc(row["lease_until"])
                if until is not None and until > now and alive(row["owner"]):
                    return str(row["owner"])
                conn.execute(delete(lease).where(lease.c.name == name))
                row = None
            if row is None:
                conn.execute(
                    insert(lease).values(
                        name=name, owner=owner, acquired_at=now, lease_until=now + duration
                    )
                )
            else:
                conn.execute(
                    update(lease).where(lease.c.name == name).values(lease_until=now + duration)
                )
            return None

    def release(self, name: str, owner: str) -> None:
        lease = s.leases
        with self._catalog._write() as conn:
            conn.execute(delete(lease).where(lease.c.name == name, lease.c.owner == owner))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        lease = s.leases
        with self._catalog._read() as conn:
            row = conn.execute(select(lease).where(lease.c.name == name)).mappings().first()
        if row is None:
            return None
        return str(row["owner"]), as_utc(row["lease_until"])  # type: ignore[return-value]


def _tick(row: Any) -> TickRecord:
    return TickRecord(
        row["schedule"],
        as_utc(row["tick_at"]),  # type: ignore[arg-type]
        as_utc(row["decided_at"]),  # type: ignore[arg-type]
        bool(row["run"]),
        row["reason"],
        row["run_id"],
    )
