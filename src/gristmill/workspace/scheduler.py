"""The scheduler as the CLI (and later the UI) sees it: schedules, and one tick.

A tick decides the due ticks of every schedule (only the leader does: one per catalog,
by a lease in the catalog) and queues their runs; working the queue is ``Workspace.work``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.access import Action, requires
from gristmill.definitions.loader import definition_files
from gristmill.definitions.schedules import Schedule
from gristmill.definitions.sensors import Sensor
from gristmill.errors import GristmillError, UnknownNameError
from gristmill.execution.coordinator import _host, owner_alive, parse_owner, this_owner
from gristmill.planning.schedules import TickDecision, decide_ticks
from gristmill.storage.catalog.records import RunRecord, utcnow
from gristmill.storage.catalog.runs import TIMED_OUT, RunRequest
from gristmill.storage.catalog.schedules import SensorState

if TYPE_CHECKING:
    from gristmill.workspace.core import Workspace
    from gristmill.workspace.shapes import RunInfo

logger = logging.getLogger(__name__)

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
class SensorInfo:
    name: str
    on: str
    """What it watches: ``new_files(source)`` or ``new_version(table)``."""
    select: list[str]
    min_interval_s: float
    cursor: str | None
    evaluated_at: datetime | None
    fired: bool
    """Whether its last evaluation queued a run."""
    reason: str | None
    """Why it fired or not, at its last evaluation."""
    last_run: dict[str, Any] | None
    """The last run it queued: id, status, when."""
    defined_at: str


@dataclass(frozen=True)
class TickReport:
    leader: bool
    """Whether this process decided the schedules (else ``held_by`` did)."""
    held_by: str | None
    decided: list[dict[str, Any]] = field(default_factory=list)
    fired: list[dict[str, Any]] = field(default_factory=list)
    """Sensors that queued a run: sensor, reason, run_id."""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """Freshness and deadline alerts sent: kind, subject, message (and run_id, delivered)."""


class Scheduler:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.owner = this_owner()
        self.ticks_meanwhile = []
        self.finished: dict[tuple[str, str], int] = {}
        """Runs this scheduler ran, by (kind, final status)."""

    @property
    def _store(self) -> Any:
        return self.ws.catalog.schedule_store

    @requires(Action.READ)
    def schedules(self, now: datetime | None = None) -> list[ScheduleInfo]:
        now = now or utcnow()
        return [self._info(s, now) for s in self.ws.project.schedules.values()]

    @requires(Action.READ)
    def schedule(self, name: str) -> ScheduleInfo:
        found = self.ws.project.schedules.get(name)
        if found is None:
            raise UnknownNameError("schedule", name, list(self.ws.project.schedules))
        return self._info(found, utcnow())

    deciding: bool = True
    """False in a worker: it runs queued runs and never decides schedules or sensors."""

    @requires(Action.RUN)
    def tick(self, now: datetime | None = None) -> TickReport:
        """Decide every schedule's due ticks and queue their runs, if this is the leader."""
        if not self.deciding:
            return TickReport(leader=False, held_by=None)
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
                lambda d, s=schedule: self.ws.coordinator.annotate(_request(s, d)),
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
        fired = self._evaluate_sensors(now)
        alerts = self.ws.watch.check(now)
        return TickReport(leader=True, held_by=None, decided=decided, fired=fired, alerts=alerts)

    # ---- sensors ------------------------------------------------------------------------

    @requires(Action.READ)
    def sensors(self) -> list[SensorInfo]:
        states = self._store.sensor_states()
        return [self._sensor_info(s, states.get(s.name)) for s in self.ws.project.sensors.values()]

    def _evaluate_sensors(self, now: datetime) -> list[dict[str, Any]]:
        """Evaluate each sensor that is due; store its cursor and reason, queue its run."""
        states = self._store.sensor_states()
        fired = []
        for sensor in self.ws.project.sensors.values():
            state = states.get(sensor.name)
            if state is not None and now - state.evaluated_at < sensor.min_interval:
                continue
            cursor, reason, fire = self._look(sensor, state.cursor if state else None)
            if not fire and state is not None and state.run_id and cursor == state.cursor:
                last = self.ws.catalog.run_store.get(state.run_id).status
                if last in ("crashed", "timed_out") and "already queued" in reason:
                    fire = True  # its run never finished the job: the files are still there
                    reason = reason.replace("already queued", f"its last run {last}: again")
                elif last in ("failed", "cancelled") and "already queued" in reason:
                    what = "the files" if sensor.on.kind == "new_files" else "the source"
                    reason = reason.replace(
                        "already queued", f"its last run {last}: fix {what} or run by hand"
                    )
            if fire and sensor.on.kind == "new_data" and state is not None and state.run_id:
                # a source's news changes while its run reads it (a stream's pending count
                # falls as messages are fetched): not a second run for the same news; the
                # cursor stays, so what arrives meanwhile fires once the run is done
                last = self.ws.catalog.run_store.get(state.run_id).status
                if last in ("queued", "running"):
                    fire, cursor = False, state.cursor
                    reason = f"{reason}; its run {state.run_id[:8]} is {last}"
            run = None
            if fire:
                run = (
                    uuid.uuid4().hex,
                    self.ws.coordinator.annotate(_sensor_request(sensor, reason)),
                )
            stored = self._store.record_sensor(sensor.name, cursor, reason, run)
            if run is not None:
                fired.append({"sensor": sensor.name, "reason": reason, "run_id": stored.run_id})
        return fired

    def _look(self, sensor: Sensor, cursor: str | None) -> tuple[str, str, bool]:
        """The sensor's new cursor, the reason, and whether it fires."""
        target = sensor.on.target
        if sensor.on.kind == "monitor_alert":
            last = self.ws.catalog.latest_alert(target)
            now = last.evaluation_id if last else ""
            if cursor is None:
                return now, f"started watching {target}'s alerts", False
            if last is not None and now != cursor:
                return now, f"{target} alerted: {last.message[:200]}", True
            return now, f"no new alert of {target}", False
        if sensor.on.kind == "new_version":
            latest = self.ws.catalog.latest_versions().get(target)
            now = "" if latest is None else str(latest)
            if cursor is None:
                return now, f"started watching {target} (at {_version(now)})", False
            if now != cursor and now:
                was = _version(cursor)
                return now, f"{target} has a new version: {_version(now)} (was {was})", True
            return now, f"{target} unchanged ({_version(now)})", False
        step = self.ws.plan([target]).step(target)  # the planner's own view of the source
        if step.action.value != "run" or (sensor.on.kind == "new_files" and not step.files):
            return cursor or "", f"{target}: {step.reason}", False
        seen = [f"{f.path}:{f.size}:{f.mtime_ns}" for f in step.files] or [step.reason]
        digest = hashlib.sha256("\n".join(seen).encode()).hexdigest()[:16]
        if not step.files:  # a database's news: what its next extraction reads
            if digest == cursor:
                return digest, f"{target}: {step.reason}, already queued", False
            return digest, f"{target}: {step.reason}", True
        names = ", ".join(f.path for f in step.files[:3])
        more = f" and {len(step.files) - 3} more" if len(step.files) > 3 else ""
        if digest == cursor:
            return digest, f"{target}: {step.reason} ({names}{more}), already queued", False
        return digest, f"{target}: {step.reason} ({names}{more})", True

    def _sensor_info(self, sensor: Sensor, state: SensorState | None) -> SensorInfo:
        last_run = None
        if state is not None and state.run_id is not None:
            run = self.ws.catalog.run_store.get(state.run_id)
            last_run = {"run_id": run.run_id, "status": run.status, "queued_at": run.created_at}
        return SensorInfo(
            name=sensor.name,
            on=str(sensor.on),
            select=list(sensor.select),
            min_interval_s=sensor.min_interval.total_seconds(),
            cursor=state.cursor if state else None,
            evaluated_at=state.evaluated_at if state else None,
            fired=state.fired if state else False,
            reason=state.reason if state else None,
            last_run=last_run,
            defined_at=str(sensor.location),
        )

    def resign(self) -> None:
        """Hand the leadership back at once (a daemon that stops)."""
        self._store.release(LEADER, self.owner)

    @requires(Action.RUN)
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
        if not store.runnable(self.ws.coordinator.limits):
            return None
        logs = self.ws.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryFile() as out,
            tempfile.NamedTemporaryFile(
                dir=logs, prefix=".running-", suffix=".log", delete=False
            ) as log,
        ):
            child = subprocess.Popen(
                [sys.executable, "-m", "gristmill.workspace.worker", str(self.ws.root)],
                stdout=out,
                stderr=log,
                start_new_session=True,  # its own process group: stopped as a whole
            )
            self._claimed = None
            try:
                self._supervise(child)
            except KeyboardInterrupt:
                _signal_group(child, signal.SIGINT)
                try:
                    child.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal_group(child, signal.SIGKILL)
                    child.wait()
                claimed = self._claimed or store.owned_by_process(_host(), child.pid)
                self._keep_log(Path(log.name), claimed.run_id if claimed else "", child)
                raise
            claimed = self._claimed
            out.seek(0)
            run_id = out.read().decode().strip() or (claimed.run_id if claimed else "")
        self._keep_log(Path(log.name), run_id, child)
        if child.returncode != 0:
            self.ws.coordinator.close_abandoned()  # a dead run process: its run crashed
        if not run_id:
            return None
        info = self.ws.run_info(run_id)
        self.notified = self._notify_failure(info)
        key = (info.kind, info.status)
        self.finished[key] = self.finished.get(key, 0) + 1
        return info

    def metrics(self, now: datetime | None = None) -> bytes:
        """The daemon's Prometheus exposition, read from the catalog at each scrape: the
        queue, each schedule's last success and lag, each freshness check's age, whether
        this process leads, and the runs it ran."""
        from prometheus_client import CollectorRegistry, Gauge
        from prometheus_client.exposition import generate_latest

        now = now or utcnow()
        registry = CollectorRegistry()

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, labels, registry=registry)

        runs = self.ws.catalog.run_store.gauges()
        gauge("gristmill_queue_depth", "Runs waiting in the queue.").set(runs["queued"])
        gauge("gristmill_runs_running", "Runs running now (any process).").set(runs["running"])
        oldest = runs["oldest_queued"]
        gauge("gristmill_queue_oldest_seconds", "How long the oldest queued run has waited.").set(
            (now - oldest).total_seconds() if oldest else 0
        )
        held = self._store.holder(LEADER)
        gauge("gristmill_scheduler_leader", "1 when this process decides the schedules.").set(
            1 if held and held[0] == self.owner else 0
        )
        last = gauge(
            "gristmill_schedule_last_success_timestamp_seconds",
            "When a run of the schedule last finished successfully (Unix time).",
            ("schedule",),
        )
        lag = gauge(
            "gristmill_schedule_lag_seconds",
            "How far behind the clock the schedule's decided ticks are.",
            ("schedule",),
        )
        cursors = self._store.cursors()
        for name in self.ws.project.schedules:
            done = runs["last_success"].get(f"schedule:{name}")
            if done is not None:
                last.labels(name).set(done.timestamp())
            if name in cursors:
                lag.labels(name).set(max((now - cursors[name]).total_seconds(), 0.0))
        age = gauge(
            "gristmill_freshness_age_seconds",
            "Age of the newest version of a freshness check's target.",
            ("check",),
        )
        stale = gauge(
            "gristmill_freshness_stale", "1 when the target is older than max_age.", ("check",)
        )
        for info in self.ws.watch.freshness(now):
            if info.age_s is not None:
                age.labels(info.name).set(info.age_s)
            stale.labels(info.name).set(0 if info.state == "fresh" else 1)
        registry.register(_RunsCollector(dict(self.finished)))
        return bytes(generate_latest(registry))

    def _keep_log(self, path: Path, run_id: str, child: subprocess.Popen[bytes]) -> None:
        """The run process's output becomes the run's log (``gristmill runs ID --log``)."""
        if not run_id:
            path.unlink(missing_ok=True)
            return
        with open(path, "a") as log:
            stamp = utcnow().isoformat(timespec="milliseconds")
            log.write(f"{stamp} run process {child.pid} exited with {child.returncode}\n")
        path.replace(path.with_name(f"{run_id}.log"))

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

    _claimed: RunRecord | None = None
    """The run the current run process claimed (once it has)."""
    ticks_meanwhile: list[TickReport]
    """Ticks decided while a run process ran (schedules and sensors do not wait for runs)."""

    def _supervise(self, child: subprocess.Popen[bytes]) -> None:
        """Wait for the run process: stop it at its run's timeout, and go on deciding the
        schedules and sensors (and renewing the leadership) every ``interval`` meanwhile."""
        store = self.ws.catalog.run_store
        next_tick = time.monotonic() + self.interval
        while child.poll() is None:
            if self._claimed is None:
                self._claimed = store.owned_by_process(_host(), child.pid)
            elif self._past_timeout(self._claimed):
                _signal_group(child, signal.SIGKILL)
                child.wait()
                self._close_timed_out(self._claimed)
                return
            if time.monotonic() >= next_tick:
                self.ticks_meanwhile.append(self.tick())
                next_tick = time.monotonic() + self.interval
            try:
                child.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass

    interval: float = 2.0
    """Seconds between ticks (the scheduler's ``--interval``)."""

    def stop_overdue(self) -> list[str]:
        """Runs of this host past their timeout whose scheduler is gone (it died, or a
        run was queued by another one): their process group is killed and they are
        closed as timed_out. The ids of the runs stopped."""
        stopped = []
        for run in self.ws.catalog.run_store.list(status="running", limit=1000):
            if run.owner is None or not self._past_timeout(run):
                continue
            host, pid, _ = parse_owner(run.owner)
            if host != _host() or pid is None or not owner_alive(run.owner):
                continue
            try:
                os.killpg(pid, signal.SIGKILL)  # a run process leads its session
            except ProcessLookupError:
                continue  # it ended meanwhile: the next start closes its run
            except PermissionError:
                logger.warning(
                    "run %s is past its timeout but its process %d is another user's: "
                    "stop it by hand (kill -9 -- -%d)",
                    run.run_id[:12],
                    pid,
                    pid,
                )
                continue
            self._close_timed_out(run)
            stopped.append(run.run_id)
        return stopped

    @staticmethod
    def _past_timeout(run: RunRecord) -> bool:
        if run.timeout_s is None or run.started_at is None:
            return False
        return (utcnow() - run.started_at).total_seconds() > run.timeout_s

    def _close_timed_out(self, run: RunRecord) -> None:
        assert run.owner is not None and run.timeout_s is not None
        self.ws.catalog.run_store.finish(
            run.run_id,
            run.owner,
            TIMED_OUT,
            error=f"ran past its timeout of {_span(run.timeout_s)}: its processes were stopped",
        )

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


def _version(cursor: str) -> str:
    return f"v{cursor}" if cursor else "never built"


def _sensor_request(sensor: Sensor, reason: str) -> RunRequest:
    return RunRequest(
        kind="build",
        selection=" ".join(sensor.select),
        full_refresh=sensor.full_refresh,
        params={
            "select": list(sensor.select),
            "sensor": sensor.name,
            "reason": reason,
            **({"tags": list(sensor.tags)} if sensor.tags else {}),
        },
        requested_by=f"sensor:{sensor.name}",
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
            **({"tags": list(schedule.tags)} if schedule.tags else {}),
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


@dataclass
class Served:
    """What one ``serve`` did: the runs it ran and the runs triggers queued."""

    ran: list[RunInfo] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def serve(
    ws: Workspace,
    *,
    once: bool,
    interval: float,
    stop: threading.Event,
    report: Callable[[str, Any], None],
    metrics: tuple[str, int] | None = None,
    metrics_public: bool = False,
    decide: bool = True,
) -> Served:
    """The scheduler's loop, for every edge (the CLI's daemon today, the UI later).

    Each tick: stop runs past their timeout whose scheduler died, decide the schedules and
    sensors, run the next queued run in its own process (deciding ticks meanwhile); when
    nothing is queued, wait ``interval`` (``once``: return). A daemon loads the project
    again when its definitions change. ``report(kind, data)`` hears of each event:
    ``tick`` and ``fired`` (dicts), ``run`` (a RunInfo), ``undelivered`` (an on_failure
    delivery), ``reloaded`` and ``reload_failed`` (a message). Leadership is handed back
    at the end, however the loop ends. ``metrics`` (host, port): serve ``GET /metrics``
    (Prometheus; a viewer key or above unless ``metrics_public``) meanwhile. ``decide``
    False: a worker, which only runs what is queued (on this or another machine).
    """
    served = Served()
    ws.scheduler.interval = interval
    ws.scheduler.deciding = decide
    seen = definition_files(ws.project)
    current = [ws]
    stop_metrics = (
        start_metrics(lambda: current[0], metrics, public=metrics_public) if metrics else None
    )
    if metrics:
        report("metrics", f"metrics on http://{metrics[0]}:{metrics[1]}/metrics")
    try:
        while not stop.is_set():
            if not once and definition_files(ws.project) != seen:
                seen = definition_files(ws.project)
                ws = _reload(ws, report)
                ws.scheduler.deciding = decide
                current[0] = ws
            ws.scheduler.stop_overdue()  # runs past their timeout whose scheduler died
            for tick_report in [*ws.scheduler.ticks_meanwhile, ws.scheduler.tick()]:
                for tick in tick_report.decided:
                    if tick["run"]:
                        served.queued.append(tick)
                    report("tick", tick)
                for fired in tick_report.fired:
                    served.queued.append(fired)
                    report("fired", fired)
                for alert in tick_report.alerts:
                    served.alerts.append(alert)
                    report("alert", alert)
            ws.scheduler.ticks_meanwhile = []
            if stop.is_set():
                break
            finished = ws.scheduler.run_next()  # in a process of its own
            if finished is not None:
                served.ran.append(finished)
                report("run", finished)
                hook = ws.scheduler.notified
                if hook is not None and not hook["delivered"]:
                    report("undelivered", hook)
                continue  # decide the schedules again, then the next queued run
            if once:
                break
            stop.wait(interval)
    finally:
        ws.scheduler.resign()
        if stop_metrics is not None:
            stop_metrics()
    return served


class _RunsCollector:
    """Runs this scheduler ran, as a counter without a creation time (each scrape builds
    its registry anew; a ``_created`` that moved would read as a counter reset)."""

    def __init__(self, finished: dict[tuple[str, str], int]) -> None:
        self.finished = finished

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "gristmill_scheduler_runs",
            "Runs this scheduler process ran since it started, by kind and final status.",
            labels=["kind", "status"],
        )
        for (kind, status), count in sorted(self.finished.items()):
            family.add_metric([kind, status], count)
        yield family


def start_metrics(
    current: Callable[[], Workspace], address: tuple[str, int], *, public: bool
) -> Callable[[], None]:
    """Serve the scheduler's metrics from a thread of this process; the function that
    stops the server. A port that cannot be bound is a clear error, here and now."""
    import socket

    import uvicorn

    from gristmill.errors import ServiceConfigError
    from gristmill.serving.app import Settings, build_metrics_app
    from gristmill.workspace.auth import Keys

    host, port = address
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ServiceConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
            hint="pick a free port: --metrics 127.0.0.1:9465",
        ) from None
    authenticate = None if public else Keys(current())
    app = build_metrics_app(
        lambda: current().scheduler.metrics(),
        Settings(authenticate=authenticate, metrics_public=public),
    )
    from gristmill.serving.protocol import GuardedProtocol

    # the serving app's guard: a request not whole within 10 s is answered 408 and closed
    GuardedProtocol.configure(max_connections=100, request_timeout=10.0)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        http=GuardedProtocol,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="metrics", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return stop


def _reload(ws: Workspace, report: Callable[[str, Any], None]) -> Workspace:
    """The project's definitions changed under a running scheduler: load them again (a
    project that no longer loads keeps the scheduler on the definitions it had)."""
    from gristmill.workspace.core import Workspace

    try:
        fresh = Workspace.open(ws.root)
    except GristmillError as exc:
        report(
            "reload_failed",
            f"the project does not load any more, keeping its last definitions: {exc}",
        )
        return ws
    ws.scheduler.resign()
    fresh.scheduler.interval = ws.scheduler.interval
    report("reloaded", "the project's definitions changed: loaded them again")
    return fresh
