"""Run coordination in the catalog: requests, the queue, claims, leases and heartbeats.

Every run is a row: requested (``queued``) or started at once (``running``), claimed by one
owner who renews its lease while it works, and closed with a final status by that owner
only. Whoever claims or starts a run first closes the runs whose owner is gone — its
lease ran out, or it was a process of this host that no longer exists — as ``crashed``;
a live peer's run is never touched.

Runs that write tables (every kind today) run one at a time per catalog. Claims are
atomic: on SQLite the transaction begins with ``BEGIN IMMEDIATE`` (the write lock is
taken before the queue is read); on PostgreSQL a transaction-level advisory lock
serializes claimers and the queued row is read ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, or_, select, text, update

from gristmill.errors import RunInProgressError, RunStateError, UnknownRunError
from gristmill.storage.catalog import schema as s
from gristmill.storage.catalog.records import RunRecord, as_utc, utcnow

if TYPE_CHECKING:
    from gristmill.storage.catalog.store import Catalog

QUEUED, RUNNING = "queued", "running"
SUCCESS, NOOP, FAILED, CRASHED, CANCELLED, TIMED_OUT = (
    "success",
    "noop",
    "failed",
    "crashed",
    "cancelled",
    "timed_out",
)
STATUSES = (QUEUED, RUNNING, SUCCESS, NOOP, FAILED, CRASHED, CANCELLED, TIMED_OUT)
FINAL = frozenset(STATUSES) - {QUEUED, RUNNING}
KINDS = ("build", "score", "monitor", "retrain", "backfill", "erase")
CLAIM_WINDOW = 100
"""How many of the first queued runs a claim considers when the first ones must wait."""
_PG_CLAIM_LOCK = 0x67726973  # any constant: the key of the claimers' advisory lock


@dataclass(frozen=True)
class RunRequest:
    """What to run, for whom: the row a run starts as."""

    kind: str
    selection: str = ""
    full_refresh: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str = ""
    priority: int = 0
    timeout_s: float | None = None
    not_before: datetime | None = None
    """A retry waits until its backoff has passed."""
    attempt: int = 1
    retry_of: str | None = None


@dataclass(frozen=True)
class Limits:
    """How many runs may run at once in a catalog (``runs``), and per tag (``tags``).

    Whatever the limits, two runs never run at once when they may write the same table:
    a run's ``params["targets"]`` lists what it may write (absent: anything)."""

    runs: int = 1
    tags: Mapping[str, int] = field(default_factory=dict)

    def blocker(self, params: Mapping[str, Any], running: list[RunRecord]) -> str | None:
        """Why a run with ``params`` may not start beside ``running`` (None: it may).
        A run that writes no table (``targets == []``: a monitor evaluation) never waits
        and is not counted."""
        if params.get("targets") == []:
            return None
        running = [r for r in running if r.params.get("targets") != []]
        if len(running) >= self.runs:
            busy = ", ".join(_describe(r) for r in running[:3])
            return f"{len(running)} run(s) running, the limit is {self.runs}: {busy}"
        for tag in params.get("tags") or ():
            limit = self.tags.get(tag)
            if limit is None:
                continue
            same = [r for r in running if tag in (r.params.get("tags") or ())]
            if len(same) >= limit:
                busy = ", ".join(_describe(r) for r in same[:3])
                return f"{len(same)} run(s) tagged {tag!r} running, its limit is {limit}: {busy}"
        mine = params.get("targets")
        for other in running:
            theirs = other.params.get("targets")
            if mine is None or theirs is None or set(mine) & set(theirs):
                shared = sorted(set(mine or ()) & set(theirs or ()))
                what = f" (both write {', '.join(shared[:3])})" if shared else ""
                return f"{_describe(other)} may write the same tables{what}"
        return None


def _describe(run: RunRecord) -> str:
    return f"{run.run_id[:12]} ({run.kind} {run.selection or 'everything'}, owned by {run.owner})"


ONE_AT_A_TIME = Limits()
"""The default: one run at a time in a catalog."""


class RunStore:
    """The runs of one catalog, as a queue with owners; the catalog's ``runs_queue``."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    # ---- requesting and claiming ----------------------------------------------------

    def enqueue(self, run_id: str, request: RunRequest) -> RunRecord:
        with self._catalog._write() as conn:
            conn.execute(insert(s.runs).values(**_new_row(run_id, request, QUEUED)))
            return self._get(conn, run_id)

    def start(
        self,
        run_id: str,
        request: RunRequest,
        owner: str,
        lease: timedelta,
        alive: Callable[[str], bool],
        limits: Limits = ONE_AT_A_TIME,
    ) -> tuple[RunRecord, int]:
        """A run started here and now, with how many abandoned runs were closed first; or
        ``RunInProgressError`` naming the run that runs."""
        with self._claiming() as conn:
            closed = self._close_abandoned(conn, alive)
            why = limits.blocker(request.params, _running_runs(conn))
            if why is not None:
                raise _in_progress(why)
            now = utcnow()
            row = _new_row(run_id, request, RUNNING, now)
            conn.execute(insert(s.runs).values(**row, **_owned(owner, now, lease)))
            return self._get(conn, run_id), closed

    def claim(
        self,
        owner: str,
        lease: timedelta,
        alive: Callable[[str], bool],
        only: str | None = None,
        limits: Limits = ONE_AT_A_TIME,
    ) -> tuple[RunRecord, int] | None:
        """The next queued run that ``limits`` let start beside the running ones (highest
        priority, then oldest; ``only``: that run if it is still queued), now this owner's,
        with how many abandoned runs were closed first; None when there is none."""
        r = s.runs
        with self._claiming() as conn:
            closed = self._close_abandoned(conn, alive)
            running = _running_runs(conn)
            if len(running) >= limits.runs:
                return None
            now = utcnow()
            query = (
                select(r.c.run_id, r.c.params)
                .where(
                    r.c.status == QUEUED,
                    or_(r.c.not_before.is_(None), r.c.not_before <= now),
                )
                .order_by(r.c.priority.desc(), r.c.created_at, r.c.run_id)
                .limit(CLAIM_WINDOW)
                .with_for_update(skip_locked=True)
            )
            if only is not None:
                query = query.where(r.c.run_id == only)
            run_id = next(
                (
                    rid
                    for rid, params in conn.execute(query).all()
                    if limits.blocker(params or {}, running) is None
                ),
                None,
            )
            if run_id is None:
                return None
            conn.execute(
                update(r)
                .where(r.c.run_id == run_id, r.c.status == QUEUED)
                .values(status=RUNNING, started_at=now, **_owned(owner, now, lease))
            )
            return self._get(conn, run_id), closed

    def heartbeat(self, run_id: str, owner: str, lease: timedelta) -> RunRecord | None:
        """Renew the lease; the run as it stands (its cancel request included), or None when
        it is no longer this owner's (a peer closed it after the lease ran out)."""
        r = s.runs
        now = utcnow()
        with self._catalog._write() as conn:
            renewed = conn.execute(
                update(r)
                .where(r.c.run_id == run_id, r.c.owner == owner, r.c.status == RUNNING)
                .values(heartbeat_at=now, lease_until=now + lease)
            )
            return self._get(conn, run_id) if renewed.rowcount else None

    def finish(
        self,
        run_id: str,
        owner: str,
        status: str,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Close this owner's run; False when it was no longer this owner's to close."""
        assert status in FINAL, status
        r = s.runs
        with self._catalog._write() as conn:
            closed = conn.execute(
                update(r)
                .where(r.c.run_id == run_id, r.c.owner == owner, r.c.status == RUNNING)
                .values(
                    status=status,
                    finished_at=utcnow(),
                    summary=summary,
                    error=error,
                    lease_until=None,
                )
            )
            if status != SUCCESS:
                _close_steps(conn, [run_id], f"the run ended {status}")
            return bool(closed.rowcount)

    def cancel(self, run_id: str) -> RunRecord:
        """A queued run is cancelled at once; a running one is asked to stop (its owner
        stops before its next step and closes it as cancelled)."""
        r = s.runs
        with self._catalog._write() as conn:
            record = self._get(conn, self._resolve(conn, run_id))
            now = utcnow()
            if record.status == QUEUED:
                conn.execute(
                    update(r)
                    .where(r.c.run_id == record.run_id, r.c.status == QUEUED)
                    .values(status=CANCELLED, finished_at=now, cancel_requested_at=now)
                )
            elif record.status == RUNNING:
                conn.execute(
                    update(r)
                    .where(r.c.run_id == record.run_id)
                    .values(cancel_requested_at=func.coalesce(r.c.cancel_requested_at, now))
                )
            else:
                raise RunStateError(
                    f"run {record.run_id[:12]} already ended ({record.status})",
                    hint="only queued or running runs can be cancelled",
                )
            return self._get(conn, record.run_id)

    def close_abandoned(self, alive: Callable[[str], bool]) -> int:
        """Close, as crashed, the running runs whose owner is gone; how many."""
        with self._claiming() as conn:
            return self._close_abandoned(conn, alive)

    # ---- reading --------------------------------------------------------------------

    def list(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 20
    ) -> list[RunRecord]:
        r = s.runs
        query = select(r).order_by(r.c.created_at.desc(), r.c.run_id).limit(limit)
        if status is not None:
            query = query.where(r.c.status == status)
        if kind is not None:
            query = query.where(r.c.kind == kind)
        with self._catalog._read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def gauges(self) -> dict[str, Any]:
        """What a metrics scrape needs, in three bounded queries: runs per status (queued
        and running), the oldest queued run's creation, each requester's last success."""
        r = s.runs
        with self._catalog._read() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(r.c.status, func.count())
                    .where(r.c.status.in_([QUEUED, RUNNING]))
                    .group_by(r.c.status)
                ).all()
            )
            oldest = conn.execute(
                select(func.min(r.c.created_at)).where(r.c.status == QUEUED)
            ).scalar()
            last: dict[str, datetime] = dict(
                conn.execute(
                    select(r.c.requested_by, func.max(r.c.finished_at))
                    .where(r.c.status.in_([SUCCESS, NOOP]), r.c.requested_by.like("schedule:%"))
                    .group_by(r.c.requested_by)
                ).all()
            )
        return {
            "queued": int(counts.get(QUEUED, 0)),
            "running": int(counts.get(RUNNING, 0)),
            "oldest_queued": as_utc(oldest),
            "last_success": {k: as_utc(v) for k, v in last.items()},
        }

    def runnable(self, limits: Limits = ONE_AT_A_TIME) -> bool:
        """Whether a claim now may take a run: one is queued and due, and fewer than the
        limit run (the claim itself checks tags and tables)."""
        r = s.runs
        now = utcnow()
        due = (
            select(r.c.run_id)
            .where(r.c.status == QUEUED, or_(r.c.not_before.is_(None), r.c.not_before <= now))
            .limit(1)
        )
        running = select(func.count()).where(r.c.status == RUNNING)
        with self._catalog._read() as conn:
            if conn.execute(due).first() is None:
                return False
            return int(conn.execute(running).scalar() or 0) < limits.runs

    def retried(self, run_id: str) -> bool:
        """Whether a later attempt of this run was queued."""
        r = s.runs
        query = select(r.c.run_id).where(r.c.retry_of == run_id).limit(1)
        with self._catalog._read() as conn:
            return conn.execute(query).first() is not None

    def last_attempt(self, run_id: str) -> RunRecord:
        """The newest attempt of a run (itself when it was never retried)."""
        r = s.runs
        with self._catalog._read() as conn:
            current = run_id
            for _ in range(1000):  # attempts are bounded by a retry policy's 100
                later = conn.execute(select(r.c.run_id).where(r.c.retry_of == current)).scalar()
                if later is None:
                    break
                current = later
            return self._get(conn, current)

    def owned_by_process(self, host: str, pid: int) -> RunRecord | None:
        """The running run that a process of ``host`` owns, if any."""
        r = s.runs
        query = select(r).where(
            r.c.status == RUNNING, r.c.owner.startswith(f"{host}:{pid}:", autoescape=True)
        )
        with self._catalog._read() as conn:
            row = conn.execute(query).mappings().first()
        return _record(row) if row else None

    def get(self, run_id: str) -> RunRecord:
        """One run by its id or a unique prefix of it."""
        with self._catalog._read() as conn:
            return self._get(conn, self._resolve(conn, run_id))

    # ---- inside a transaction -------------------------------------------------------

    @contextmanager
    def _claiming(self) -> Iterator[Connection]:
        with self._catalog._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CLAIM_LOCK})
            yield conn

    def _close_abandoned(self, conn: Connection, alive: Callable[[str], bool]) -> int:
        r = s.runs
        now = utcnow()
        rows = conn.execute(
            select(r.c.run_id, r.c.owner, r.c.lease_until).where(r.c.status == RUNNING)
        ).all()
        gone = [
            run_id
            for run_id, owner, lease_until in rows
            if owner is None  # started by a release before leases
            or (as_utc(lease_until) or now) <= now
            or not alive(owner)
        ]
        if not gone:
            return 0
        conn.execute(
            update(r)
            .where(r.c.run_id.in_(gone), r.c.status == RUNNING)
            .values(
                status=CRASHED,
                finished_at=now,
                lease_until=None,
                error=func.coalesce(r.c.error, "its process stopped before the run finished"),
            )
        )
        _close_steps(conn, gone, "the process stopped before the step finished")
        return len(gone)

    def _resolve(self, conn: Connection, run_id: str) -> str:
        r = s.runs
        run_id = run_id.strip().lower()
        if not run_id or len(run_id) > 36 or not all(c in "0123456789abcdef" for c in run_id):
            shown = run_id if len(run_id) <= 40 else run_id[:40] + "..."
            raise UnknownRunError(
                f"{shown!r} is not a run id",
                hint="`gristmill runs` lists run ids; a unique prefix is enough",
            )
        found = conn.execute(select(r.c.run_id).where(r.c.run_id.startswith(run_id)).limit(4))
        ids = [str(row[0]) for row in found]
        if len(ids) != 1:
            several = ", ".join(i[:12] for i in ids[:3]) + (", ..." if len(ids) > 3 else "")
            raise UnknownRunError(
                f"no run matches {run_id!r}"
                if not ids
                else f"{run_id!r} matches several runs ({several})",
                hint="`gristmill runs` lists run ids; a unique prefix is enough",
            )
        return ids[0]

    def _get(self, conn: Connection, run_id: str) -> RunRecord:
        row = conn.execute(select(s.runs).where(s.runs.c.run_id == run_id)).mappings().one()
        return _record(row)


def _new_row(
    run_id: str, request: RunRequest, status: str, started: datetime | None = None
) -> dict[str, Any]:
    if request.kind not in KINDS:
        raise ValueError(f"unknown run kind {request.kind!r}")
    return {
        "run_id": run_id,
        "kind": request.kind,
        "status": status,
        "selection": request.selection,
        "full_refresh": request.full_refresh,
        "params": request.params or None,
        "requested_by": request.requested_by,
        "priority": request.priority,
        "created_at": started or utcnow(),
        "started_at": started,
        "timeout_s": request.timeout_s,
        "not_before": request.not_before,
        "attempt": request.attempt,
        "retry_of": request.retry_of,
    }


def _owned(owner: str, now: datetime, lease: timedelta) -> dict[str, Any]:
    return {"owner": owner, "heartbeat_at": now, "lease_until": now + lease}


def _close_steps(conn: Connection, run_ids: list[str], error: str) -> None:
    t = s.step_runs
    conn.execute(
        update(t)
        .where(t.c.run_id.in_(run_ids), t.c.status == RUNNING)
        .values(status=CRASHED, error=error)
    )


def _running_runs(conn: Connection) -> list[RunRecord]:
    r = s.runs
    rows = conn.execute(select(r).where(r.c.status == RUNNING).limit(1000)).mappings()
    return [_record(row) for row in rows]


def _in_progress(why: str) -> RunInProgressError:
    return RunInProgressError(
        f"this run cannot start now: {why}",
        hint="wait for it to finish, or queue yours: gristmill run --queue (a killed run's "
        "lease is released at once on its own host, after its lease elsewhere)",
    )


def _record(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        started_at=as_utc(row["started_at"]),
        finished_at=as_utc(row["finished_at"]),
        status=row["status"],
        selection=row["selection"],
        full_refresh=bool(row["full_refresh"]),
        summary=row["summary"],
        kind=row["kind"],
        requested_by=row["requested_by"],
        priority=row["priority"],
        params=row["params"] or {},
        created_at=as_utc(row["created_at"]),
        owner=row["owner"],
        heartbeat_at=as_utc(row["heartbeat_at"]),
        lease_until=as_utc(row["lease_until"]),
        cancel_requested_at=as_utc(row["cancel_requested_at"]),
        error=row["error"],
        timeout_s=row["timeout_s"],
        not_before=as_utc(row["not_before"]),
        attempt=row["attempt"],
        retry_of=row["retry_of"],
    )


__all__ = ["FINAL", "KINDS", "STATUSES", "RunRequest", "RunStore"]
