"""The service layer: one object that the CLI, the HTTP API and the UI all call.

It wires the layers together (definitions -> planning -> execution -> storage) and turns
internal records into the public shapes of ``shapes.py``. It never prints.
"""

from __future__ import annotations

import getpass
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gristmill.access import Action as Do
from gristmill.access import Principal, requires
from gristmill.definitions.graph import Graph
from gristmill.definitions.loader import Project, load_project
from gristmill.definitions.objects import Table
from gristmill.definitions.sources import FileSource
from gristmill.errors import (
    GristmillError,
    MissingExtraError,
    NotFoundError,
    NotMaterializedError,
    RunInProgressError,
    UnknownRunError,
    VersionNotFoundError,
)
from gristmill.execution.coordinator import ActiveRun, Coordinator
from gristmill.execution.engines import Engine, Session, create_engine
from gristmill.execution.recovery import Recovery, reconcile
from gristmill.execution.reporter import NullReporter, Reporter, StepStatus
from gristmill.execution.runner import Runner, RunResult
from gristmill.planning import Action, Backfill, Plan, PlannedStep, build_plan
from gristmill.planning.planner import plan_partitioned_step
from gristmill.storage.artifacts import ArtifactStore
from gristmill.storage.catalog import Catalog, Materialization, resolve_url
from gristmill.storage.catalog.records import RunRecord, utcnow
from gristmill.storage.catalog.runs import KINDS, STATUSES, Limits, RunRequest
from gristmill.storage.lake import Lake
from gristmill.storage.location import Location
from gristmill.storage.online import OnlineStore, open_online_store
from gristmill.workspace.shapes import (
    AuditEvent,
    LineageNode,
    ProjectGraph,
    RunInfo,
    SourceInfo,
    TableInfo,
    TableStatus,
    VersionInfo,
)

if TYPE_CHECKING:
    import threading

    import pyarrow as pa

    from gristmill.execution.engines.choice import EngineChooser
    from gristmill.execution.online import OnlineSync
    from gristmill.storage.catalog.records import ErasureRecord
    from gristmill.workspace.auth import Tokens
    from gristmill.workspace.erasure import Erasure
    from gristmill.workspace.models import Models
    from gristmill.workspace.monitors import Evaluation, Monitors
    from gristmill.workspace.query import Queries
    from gristmill.workspace.scheduler import Scheduler
    from gristmill.workspace.services import Services
    from gristmill.workspace.watch import Watch

STATE_DIR = ".gristmill"
Frame = Literal["arrow", "polars", "pandas"]


@dataclass(frozen=True)
class RunOutcome:
    result: RunResult
    plan: Plan
    recovery: Recovery
    online: tuple[OnlineSync, ...] = ()
    monitors: tuple[Evaluation, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.ok

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for step in self.result.steps:
            counts[step.status.value] = counts.get(step.status.value, 0) + 1
        return {
            "status": self.result.status,
            "steps": counts,
            "rows_written": sum(s.rows_added or 0 for s in self.result.steps),
            "quarantined": sum(s.quarantined for s in self.result.steps),
            "duration_s": round(self.result.duration_s, 3),
            "recovered_versions": [list(a) for a in self.recovery.adopted],
            "crashed_runs_closed": self.recovery.crashed_runs,
            "online": [
                {
                    "view": o.view,
                    "version": o.version,
                    "mode": o.mode,
                    "upserted": o.upserted,
                    "deleted": o.deleted,
                    "rows": o.rows,
                    "duration_s": o.duration_s,
                }
                for o in self.online
                if o.mode != "fresh"
            ],
            "monitors": [e.to_dict() for e in self.monitors],
        }


@dataclass(frozen=True)
class TableSample:
    table: str
    version: int
    rows: int
    quarantined: int
    quarantine_counts: dict[str, int]
    data: pa.Table

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "version": self.version,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "counts": self.quarantine_counts,
            "data": self.data.to_pylist(),
        }


class Workspace:
    """A loaded project with its catalog and lake."""

    def __init__(self, project: Project, *, principal_required: bool = False) -> None:
        self.project = project
        self.root = project.root
        self.state_dir = self.root / STATE_DIR
        self.principal_required = principal_required
        """An API or UI process: every call must act as a principal (``acting_as``); none
        falls back to the OS user."""

    def refresh(self) -> bool:
        """Load the project's definitions again if a file of them changed since they were
        loaded (a long-running server sees an edited gate, a new table); True if it did.
        The lake, catalog and stores stay the ones opened (a change of those needs a
        restart). A project that no longer loads raises its error, as the CLI would."""
        stamp = _definitions_stamp(self.root, self.project)
        if getattr(self, "_stamp", None) is None:
            self._stamp = stamp
            return False
        if stamp == self._stamp:
            return False
        self.project = load_project(self.root)
        self._stamp = _definitions_stamp(self.root, self.project)
        self.__dict__.pop("_cli_principal", None)
        return True

    @property
    def principal(self) -> Principal:
        """Who the current call acts as: the edge's principal (``access.acting_as``), else
        the command line's (``GRISTMILL_TOKEN`` or the OS user mapped in ``[access]``)."""
        from gristmill import access
        from gristmill.errors import Unauthorized

        acting = access.current()
        if acting is not None:
            return acting
        if self.principal_required:
            raise Unauthorized("this call has no principal", hint="log in or send an API key")
        return self._cli_principal

    @cached_property
    def _cli_principal(self) -> Principal:
        from gristmill.workspace.auth import cli_principal

        return cli_principal(self)

    def authorize(self, action: Do, what: str = "") -> Principal:
        """The checkpoint: the current principal, if it may take ``action``."""
        from gristmill.access import authorize

        return authorize(self.principal, action, what)

    @classmethod
    def open(cls, path: Path | str | None = None) -> Workspace:
        return cls(load_project(Path(path) if path else Path.cwd()))

    @cached_property
    def catalog(self) -> Catalog:
        self.state_dir.mkdir(exist_ok=True)
        return Catalog(resolve_url(self.project.config.catalog, self.root))

    @cached_property
    def lake(self) -> Lake:
        where = Location.parse(self.project.config.lake, self.root, setting="lake")
        where.check("lake")
        return Lake(where, cache=self.state_dir / "lake-cache")

    @cached_property
    def artifacts(self) -> ArtifactStore:
        config = self.project.config.artifacts
        where = Location.parse(config, self.root, setting="artifacts")
        where.check("artifacts")
        return ArtifactStore(where)

    @cached_property
    def services(self) -> Services:
        """Services: a model alias, online lookups and a decision policy."""
        from gristmill.workspace.services import Services

        return Services(self)

    @cached_property
    def tokens(self) -> Tokens:
        """API keys for serving (stored as SHA-256 hashes)."""
        from gristmill.workspace.auth import Tokens

        return Tokens(self)

    @requires(Do.READ_ROWS)
    def predictions(
        self, service: str, *, since: str | timedelta | None = None, limit: int = 50
    ) -> pa.Table:
        """What a service answered, newest first, from its prediction log.

        ``since``: a window such as ``"1h"`` or a ``timedelta``.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        from gristmill.definitions.models import parse_duration
        from gristmill.serving.log import SCHEMA, log_table

        self.services.spec(service)
        window = None if since is None else parse_duration(since)
        name = log_table(service)
        version = self.lake.latest_version(name)
        if version is None:
            return SCHEMA.empty_table()
        now = utcnow()
        recent = None
        if window is not None and window < now - now.min.replace(tzinfo=now.tzinfo):
            recent = pc.field("at") >= pa.scalar(now - window, SCHEMA.field("at").type)
        # the newest ``limit`` rows, batch by batch: memory follows the limit, not the log
        dataset = self.lake.dataset(name, version)
        newest = dataset.schema.empty_table()
        order = [("at", "descending")]
        for batch in dataset.to_batches(filter=recent):
            if batch.num_rows:
                both = pa.concat_tables([newest, pa.Table.from_batches([batch])])
                newest = both.take(pc.select_k_unstable(both, limit, order))
        return newest.sort_by(order)

    @cached_property
    def monitors(self) -> Monitors:
        """Drift, performance and quality monitors: evaluate, alert, retrain."""
        from gristmill.workspace.monitors import Monitors

        return Monitors(self)

    @cached_property
    def queries(self) -> Queries:
        """SQL over pinned table versions with masks: the SQL page, ``gm.connect``."""
        from gristmill.workspace.query import Queries

        return Queries(self)

    @requires(Do.READ)
    def project_graph(self, focus: str | None = None, hops: int | None = None) -> ProjectGraph:
        """The whole project as one lineage graph with statuses (pruned around ``focus``)."""
        from gristmill.workspace.overview import project_graph

        return project_graph(self, focus, hops)

    @requires(Do.READ)
    def audit(self, limit: int = 200) -> list[AuditEvent]:
        """The audit trail, newest first: alias moves, refusals, retrains, erasures."""
        from gristmill.workspace.overview import audit

        return audit(self, limit)

    def masked(self, table: str, data: pa.Table) -> pa.Table:
        """``data`` of ``table`` with its personal-data columns masked for the principal."""
        from gristmill.access import mask_arrow

        masks = self.queries.masks().get(table, {})
        return mask_arrow(data, masks) if masks else data

    @cached_property
    def models(self) -> Models:
        """The model registry: versions, aliases and gates, batch scoring."""
        from gristmill.workspace.models import Models

        return Models(self)

    @property
    def graph(self) -> Graph:
        return self.project.graph

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()
        if "online_store" in self.__dict__:
            self.online_store.close()

    # ---- running ---------------------------------------------------------------------

    @requires(Do.READ)
    def plan(
        self,
        selection: Sequence[str] = (),
        *,
        full_refresh: bool = False,
        force: Sequence[str] = (),
        backfill: Backfill | None = None,
    ) -> Plan:
        """What a run would do, and why; ``backfill``: the partitions of one table that a
        backfill of its range would build (missing, failed or stale), each with its reason."""
        from gristmill.execution.sources import discover

        state = self.catalog.reader()
        chosen = [] if backfill is not None else self.graph.select(selection)
        plan = build_plan(
            self.graph,
            state,
            self.root,
            selection=selection,
            full_refresh=full_refresh,
            force=force,
            backfill=backfill,
            changed_ranges=self.lake.changed_ranges,
            offers=discover(self.graph, list(chosen), self.root, state),
        )
        return replace(plan, steps=tuple(self._with_engine(step) for step in plan.steps))

    def _with_engine(self, step: PlannedStep) -> PlannedStep:
        """The engine a step would run on, judged by its inputs' latest versions (a run
        judges again by the versions it reads)."""
        if step.action is not Action.RUN:
            return step
        versions = {}
        for name in step.dependencies:
            latest = self.lake.latest_version(name)
            if latest is not None:
                versions[name] = latest
        choice = self.engine_chooser.choose(self.graph.nodes[step.name], versions)
        missing = [d for d in step.dependencies if d not in versions]
        reason = choice.reason
        if missing and reason.startswith("inputs "):  # judged without them
            reason += f" (not built yet: {', '.join(missing)})"
        return replace(step, engine=choice.engine, engine_reason=reason)

    @requires(Do.RUN)
    def backfill(
        self,
        backfill: Backfill,
        *,
        reporter: Reporter | None = None,
        requested_by: str | None = None,
    ) -> RunOutcome:
        """Build the missing, failed and stale partitions of a range, here and now, as a
        run of kind ``backfill`` (cancel it like any run; run it again to resume)."""
        self.plan(backfill=backfill)  # refuse bad input before a run is recorded
        with self.coordinator.start(
            backfill_request(backfill, requested_by or self.principal.name)
        ) as active:
            outcome = self._build(active, reporter)
        return outcome

    @requires(Do.RUN)
    def enqueue_backfill(
        self, backfill: Backfill, *, requested_by: str | None = None, priority: int = 0
    ) -> RunInfo:
        """Queue a backfill for the scheduler instead of running it here."""
        self.plan(backfill=backfill)
        request = replace(
            backfill_request(backfill, requested_by or self.principal.name), priority=priority
        )
        return _run_info(self.coordinator.enqueue(request))

    @requires(Do.RUN)
    def ingest(
        self,
        sources: Sequence[str],
        *,
        full_refresh: bool = False,
        reporter: Reporter | None = None,
    ) -> RunOutcome:
        """Read new data from ``sources`` now, as a run of just them (their downstream
        tables are left for the next ``run``); a name that is no source is refused."""
        from gristmill.errors import UnknownNameError

        known = [s.name for s in self.graph.sources()]
        for name in sources:
            if name not in known:
                raise UnknownNameError("source", name, known)
        return self.run(sources, full_refresh=full_refresh, reporter=reporter)

    @requires(Do.ERASE)
    def erase(self, subject: str) -> Erasure:
        """Remove a person's rows (``subject``: ``COLUMN=VALUE``) from every table that
        carries the column, across history, and verify it on disk (see ``erasure``)."""
        from gristmill.workspace.erasure import erase, parse_subject

        column, value = parse_subject(subject)
        return erase(self, column, value, actor=self.principal.name)

    @requires(Do.READ)
    def erasures(self) -> list[ErasureRecord]:
        """The erasure trail, oldest first."""
        return self.catalog.erasures()

    @requires(Do.READ)
    def follow(
        self,
        sources: Sequence[str],
        *,
        stop: threading.Event,
        report: Callable[[RunOutcome], None],
        idle_s: float = 1.0,
        full_refresh: bool = False,
    ) -> RunOutcome | None:
        """Ingest ``sources`` again and again until ``stop`` is set: at once while they
        keep finding new data, ``idle_s`` apart while they find none, backing off (up to a
        minute) while a failure is transient (a server down). Returns the run that failed
        for good, or None when stopped."""
        from gristmill.errors import RunInProgressError

        wait = idle_s
        refresh = full_refresh
        while not stop.is_set():
            try:
                outcome = self.ingest(sources, full_refresh=refresh)
            except RunInProgressError:  # another run of the project: wait for it
                stop.wait(idle_s)
                continue
            refresh = False
            report(outcome)
            if not outcome.ok:
                if not outcome.result.transient:
                    return outcome
                wait = min(max(wait * 2, 1.0), 60.0)
            elif outcome.result.status == "noop":
                wait = idle_s
            else:
                continue
            stop.wait(wait)
        return None

    @requires(Do.RUN)
    def run(
        self,
        selection: Sequence[str] = (),
        *,
        full_refresh: bool = False,
        force: Sequence[str] = (),
        reporter: Reporter | None = None,
        monitors: bool = True,
        requested_by: str | None = None,
        tags: Sequence[str] = (),
    ) -> RunOutcome:
        """Build what is stale, fill the online store, then evaluate the monitors whose
        inputs changed (``monitors=False``: skip them; a retrain trigger's run does).

        The run is started here and now (``RunInProgressError`` while another runs)."""
        self.graph.select(selection)  # a selection naming nothing: no run is recorded
        request = build_request(
            selection, full_refresh, force, requested_by or self.principal.name, tags=tags
        )
        with self.coordinator.start(request) as active:
            outcome = self._build(active, reporter)
        return self._after_build(outcome, monitors)

    @requires(Do.RUN)
    def enqueue(
        self,
        selection: Sequence[str] = (),
        *,
        full_refresh: bool = False,
        force: Sequence[str] = (),
        requested_by: str | None = None,
        priority: int = 0,
        timeout: timedelta | None = None,
        tags: Sequence[str] = (),
    ) -> RunInfo:
        """Queue a build for the scheduler (or ``work``) instead of running it here;
        ``timeout``: the scheduler stops it (its processes) once it has run this long."""
        self.plan(selection, full_refresh=full_refresh, force=force)  # refuse bad input now
        request = build_request(
            selection, full_refresh, force, requested_by or self.principal.name, priority, tags
        )
        if timeout is not None:
            request = replace(request, timeout_s=timeout.total_seconds())
        return _run_info(self.coordinator.enqueue(request))

    @requires(Do.RUN)
    def work(
        self,
        *,
        reporter: Reporter | None = None,
        limit: int | None = None,
        only: str | None = None,
    ) -> list[RunInfo]:
        """Run queued runs here, one after the other, until the queue is empty (or another
        process is running one; ``only``: just that run, if still queued); the runs that
        ran, as they ended."""
        done: list[RunInfo] = []
        while (limit is None or len(done) < limit) and not (only and done):
            outcome = None
            raised: GristmillError | None = None
            claimed: ActiveRun | None = None
            try:
                with self.coordinator.claim(only) as active:
                    if active is None:
                        break
                    claimed = active
                    kind = active.record.kind
                    if kind in ("build", "backfill"):
                        outcome = self._build(active, reporter)
                    elif kind == "retrain":
                        settle = partial(self.monitors.settle, active.record.params)
                        outcome = self._build(active, reporter, then=settle)
                    else:
                        kind = active.record.kind
                        active.finish("failed", error=f"runs of kind {kind!r} cannot be queued")
            except GristmillError as exc:
                if claimed is None:  # the claim itself failed (the catalog is away)
                    raise
                raised = exc  # the lifecycle closed the run as failed; the queue goes on
            assert claimed is not None
            if outcome is not None:
                self._after_build(
                    outcome, monitors=claimed.record.kind != "retrain", triggered=False
                )
            record = self.coordinator.store.get(claimed.run_id)
            transient = raised.transient if raised else bool(outcome and outcome.result.transient)
            if record.status == "failed" and transient:
                self._retry(record)
            done.append(_run_info(record))
        return done

    def _retry(self, failed: RunRecord) -> RunRecord | None:
        """The next attempt of a scheduled run that failed of transient errors, queued to
        start after its backoff; None when its schedule has no retries left."""
        schedule = self.project.schedules.get(str(failed.params.get("schedule", "")))
        policy = schedule.retries if schedule is not None else None
        if policy is None or failed.attempt >= policy.attempts:
            return None
        wait = policy.delay(failed.attempt)
        if policy.jitter:  # "equal jitter": half the backoff, plus up to the other half
            wait = wait / 2 + wait / 2 * random.random()
        request = RunRequest(
            kind=failed.kind,
            selection=failed.selection,
            full_refresh=failed.full_refresh,
            params=failed.params,
            requested_by=failed.requested_by,
            priority=failed.priority,
            timeout_s=failed.timeout_s,
            not_before=utcnow() + wait,
            attempt=failed.attempt + 1,
            retry_of=failed.run_id,
        )
        return self.coordinator.enqueue(request)

    @requires(Do.RUN)
    def cancel(self, run_id: str) -> RunInfo:
        """Cancel a queued run, or ask a running one to stop before its next step."""
        return _run_info(self.coordinator.cancel(run_id))

    def _build(
        self,
        active: ActiveRun,
        reporter: Reporter | None,
        then: Callable[[RunOutcome], dict[str, Any]] | None = None,
    ) -> RunOutcome:
        reporter = reporter or NullReporter()
        params = active.record.params
        self.lake.clean_scratch()  # what a killed run left on its way
        recovery = reconcile(self.graph, self.catalog, self.lake, active.closed_abandoned)
        backfill = params.get("backfill")
        plan = self.plan(
            params.get("select", ()),
            full_refresh=active.record.full_refresh,
            force=params.get("force", ()),
            backfill=Backfill(**backfill) if isinstance(backfill, dict) else None,
        )
        reporter.plan_ready(plan)
        runner = self._runner(reporter)
        runner.replan = partial(self._replan, plan)
        result = runner.run(plan, active.run_id, active.should_stop)
        online = () if result.status == "cancelled" else self.sync_online()
        outcome = RunOutcome(result=result, plan=plan, recovery=recovery, online=online)
        summary = outcome.summary()
        if then is not None and result.status != "cancelled":
            summary.update(then(outcome))  # e.g. a retrain's gate decision
        active.finish(result.status, summary, result.error())
        return outcome

    def _replan(self, plan: Plan, step: PlannedStep, versions: dict[str, int]) -> PlannedStep:
        node = self.graph.nodes[step.name]
        assert isinstance(node, Table)
        return plan_partitioned_step(
            node,
            self.catalog.reader(),
            {**self.catalog.latest_versions(), **versions},
            set(),
            plan.full_refresh or step.name in plan.force,
            plan.full_refresh,
            plan.backfill,
            self.lake.changed_ranges,
            None,
        )

    def _after_build(
        self, outcome: RunOutcome, monitors: bool, *, triggered: bool = True
    ) -> RunOutcome:
        """Update the online rows of stream-fed feature views whose source landed rows,
        then evaluate the monitors a build's changes concern; ``triggered``: run the
        retrains their alerts queue here too (else the scheduler does)."""
        self._push_features(outcome)
        if monitors and outcome.result.ok and self.project.monitors:
            evaluations = tuple(
                self.monitors.run(
                    only_changed=True,
                    run_triggered=triggered,
                    requested_by=f"run:{outcome.result.run_id}",
                )
            )
            outcome = replace(outcome, monitors=evaluations)
        return outcome

    def _push_features(self, outcome: RunOutcome) -> None:
        """``gm.stream_features`` views: their online rows for the entities a source's new
        rows touched, at once (a view the run rebuilt was synced with the run already)."""
        views = [
            t
            for t in self.graph.tables()
            if t.feature is not None and t.feature.pushed_from is not None
        ]
        if not views:
            return
        done = [s for s in outcome.result.steps if s.status is StepStatus.SUCCESS]
        landed = {s.name: s.version for s in done if (s.rows_added or 0) > 0}
        rebuilt = {s.name for s in done}
        todo = [
            v
            for v in views
            if v.feature is not None and v.feature.pushed_from in landed and v.name not in rebuilt
        ]
        if not todo:
            return
        from gristmill.execution.online import push_view

        with self.engine_session() as (session, scan):
            for view in todo:
                assert view.feature is not None and view.feature.pushed_from is not None
                version = landed[view.feature.pushed_from]
                assert version is not None
                push_view(session, self.lake, self.online_store, view, version, scan=scan)

    @cached_property
    def coordinator(self) -> Coordinator:
        settings = self.project.config.runs
        return Coordinator(
            self.catalog.run_store,
            limits=Limits(settings.max_concurrent, dict(settings.tag_limits)),
            annotate=self._targets,
        )

    def _targets(self, request: RunRequest) -> RunRequest:
        """The request with the tables it may write (``params["targets"]``): the runs that
        may write the same table never run at once."""
        params = dict(request.params)
        if "targets" in params:
            return request
        if isinstance(params.get("backfill"), dict):
            params["targets"] = [params["backfill"]["table"]]
        elif request.kind in ("build", "retrain") and "select" in params:
            try:
                params["targets"] = sorted(self.graph.select(params["select"]))
            except GristmillError:
                return request  # unknown: it conflicts with every run
        else:
            return request
        return replace(request, params=params)

    @cached_property
    def watch(self) -> Watch:
        """Freshness checks and schedule deadlines."""
        from gristmill.workspace.watch import Watch

        return Watch(self)

    @cached_property
    def scheduler(self) -> Scheduler:
        from gristmill.workspace.scheduler import Scheduler

        return Scheduler(self)

    @requires(Do.RUN)
    def sync_online(self) -> tuple[OnlineSync, ...]:
        """Bring every online feature view's latest version into the online store."""
        views = [t for t in self.graph.tables() if t.feature is not None and t.feature.online]
        latest = self.catalog.latest_versions()
        from gristmill.execution.online import already_synced, sync_view

        done: dict[str, OnlineSync] = {}
        todo = []
        for view in (v for v in views if v.name in latest):
            built = self.catalog.materialization(view.name, latest[view.name])
            columns = [c["name"] for c in (built.schema if built else [])]
            fresh = already_synced(self.online_store, view, latest[view.name], columns)
            if fresh is None:
                todo.append(view)
            else:  # a no-op run opens neither the engine nor the table
                done[view.name] = fresh
        if todo:
            with self.engine_session() as (session, scan):
                for view in todo:
                    done[view.name] = sync_view(
                        session, self.lake, self.online_store, view, latest[view.name], scan=scan
                    )
        return tuple(done[v.name] for v in views if v.name in done)

    @contextmanager
    def engine_session(self, name: str | None = None) -> Iterator[tuple[Session, bool]]:
        """A session of a fresh engine outside a run, and whether it scans Parquet itself."""
        engine = self.engine(name)
        try:
            with engine.session() as session:
                yield session, engine.SUPPORTS_PARQUET_SCAN
        finally:
            engine.close()

    @requires(Do.READ_ROWS)
    def lookup(self, view: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """Online features of entities (for composite keys, values joined by \\x1f)."""
        import orjson

        node = self.graph.get(view)
        if not isinstance(node, Table) or node.feature is None or not node.feature.online:
            raise NotMaterializedError(
                f"{view!r} is not an online feature view",
                hint="declare it with gm.feature_view(..., online=True) and run",
            )
        state = self.online_store.state(view)
        if state is None:
            return [None] * len(keys)
        found = self.online_store.get(view, list(keys))
        return [
            dict(zip(state.columns, orjson.loads(v), strict=True)) if v else None for v in found
        ]

    @cached_property
    def online_store(self) -> OnlineStore:
        return open_online_store(self.project.config.online_store, self.root, self.project.name)

    def engine(self, name: str | None = None) -> Engine:
        """The engine named (the one a step was given), else DuckDB: what runs everything
        outside SQL steps (the project's ``engine`` chooses per SQL step; see
        ``engine_chooser``)."""
        name = name or "duckdb"
        if name == "spark":
            spark = self.project.config.spark
            return create_engine("spark", master=spark.master, conf=spark.conf)
        settings = self.project.config.duckdb
        temp = Path(settings.temp_directory) if settings.temp_directory else self.state_dir / "tmp"
        return create_engine(
            name,
            memory_limit=settings.memory_limit,
            threads=settings.threads,
            temp_directory=temp,
        )

    @cached_property
    def engine_chooser(self) -> EngineChooser:
        """Which engine runs each step, and why (``engine``, ``auto_threshold``)."""
        from gristmill.definitions.config import size_bytes
        from gristmill.execution.engines.choice import EngineChooser

        config = self.project.config
        return EngineChooser(
            self.lake,
            project_engine=config.engine,
            threshold_bytes=size_bytes(config.auto_threshold),
            spark_master=config.spark.master,
        )

    def _runner(self, reporter: Reporter) -> Runner:
        return Runner(
            root=self.root,
            graph=self.graph,
            catalog=self.catalog,
            lake=self.lake,
            engine_factory=self.engine,
            engine_chooser=self.engine_chooser.choose,
            reporter=reporter,
            parallelism=self.project.config.parallelism,
            artifacts=self.artifacts,
            pii=self.project.config.pii,
        )

    # ---- reading ---------------------------------------------------------------------

    @requires(Do.READ)
    def status(self) -> list[TableStatus]:
        plan = self.plan()
        out = []
        for step in plan.steps:
            last = self.catalog.latest(step.name)
            state = (
                "never built"
                if last is None
                else ("stale" if step.action.value == "run" else "fresh")
            )
            out.append(
                TableStatus(
                    name=step.name,
                    kind=step.kind.value,
                    version=last.version if last else None,
                    rows=last.rows if last else None,
                    built_at=last.finished_at if last else None,
                    state=state,
                    reason=step.reason,
                    quarantined=last.quarantined if last else 0,
                    feature_view=self._feature(step.name),
                )
            )
        return out

    @requires(Do.READ)
    def tables(self) -> list[TableInfo]:
        return [self._table_info(name) for name in self.graph.order]

    @requires(Do.READ)
    def table(self, name: str) -> TableInfo:
        """One table as ``tables`` shows it (an unknown name: the error lists the tables)."""
        self.graph.get(name)
        return self._table_info(name)

    def _table_info(self, name: str) -> TableInfo:
        node = self.graph.nodes[name]
        last = self.catalog.latest(name)
        return TableInfo(
            name=name,
            kind=node.kind.value,
            defined_at=str(node.location),
            inputs=list(node.dependencies),
            version=last.version if last else None,
            rows=last.rows if last else None,
            columns=last.schema if last else _declared(node),
            description=node.description,
            feature_view=self._feature(name),
        )

    @requires(Do.READ)
    def sources(self) -> list[SourceInfo]:
        """Each source: its kind, what it reads, its state, how far behind, its last error."""
        from gristmill.definitions.sources import (
            DatabaseSource,
            IntakeSource,
            Source,
            StreamSource,
        )
        from gristmill.definitions.urls import redact_credentials
        from gristmill.execution.sources import stream
        from gristmill.execution.sources.database import State

        out = []
        state = self.catalog.reader()
        for node in self.graph.sources():
            assert isinstance(node, Source)
            last = state.latest(node.name)
            step = state.latest_step(node.name)
            error = step.error if step is not None and step.status == "failed" else None
            info: dict[str, Any]
            behind = None
            if isinstance(node, DatabaseSource):
                reads = f"{redact_credentials(node.url)} {node.table or '(query)'}"
                current = State.of(last)
                info = current.to_json() if current else {}
                if node.captures:
                    from gristmill.execution.sources.cdc import LogState

                    position = LogState.of(last)
                    info = {"capture": "logical", **(position.to_json() if position else {})}
                mark = current.watermark if current else None
                if isinstance(mark, datetime):
                    now = datetime.now(UTC if mark.tzinfo else None)
                    if mark.tzinfo is None:  # naive cursor values are read as UTC
                        now = datetime.now(UTC).replace(tzinfo=None)
                    behind = round((now - mark).total_seconds(), 1)
            elif isinstance(node, IntakeSource):
                from gristmill.execution.sources import intake

                reads = f"POST /v1/intake/{node.name}"
                posted = intake.State.of(last)
                buffer = intake.open_buffer(self.root / STATE_DIR, node)
                try:
                    requests, rows = buffer.waiting(posted.request if posted else 0)
                finally:
                    buffer.close()
                info = {**(posted.to_json() if posted else {}), "waiting_rows": rows,
                        "waiting_requests": requests}  # fmt: skip
            elif isinstance(node, StreamSource):
                subject = f" {node.subject}" if node.subject else ""
                reads = f"{redact_credentials(node.url)} {node.stream}{subject}"
                landed = stream.State.of(last)
                info = landed.to_json() if landed else {}
                if landed is not None and landed.published:
                    newest = datetime.fromisoformat(landed.published)
                    behind = round((datetime.now(UTC) - newest).total_seconds(), 1)
            else:
                assert isinstance(node, FileSource)
                reads = node.path
                info = {"files": len(state.ingested_files(node.name))}
            out.append(
                SourceInfo(
                    name=node.name,
                    kind=node.source_kind,
                    reads=reads,
                    version=last.version if last else None,
                    rows=last.rows if last else None,
                    extracted_at=last.finished_at if last else None,
                    state=info,
                    behind_s=behind,
                    last_error=error,
                )
            )
        return out

    def _feature(self, name: str) -> dict[str, Any] | None:
        node = self.graph.nodes[name]
        if isinstance(node, Table) and node.feature is not None:
            return {"entity": list(node.feature.entity), "timestamp": node.feature.timestamp}
        return None

    @requires(Do.READ)
    def materialization(self, table: str, version: int | None = None) -> Materialization:
        if table not in self.graph.nodes and self.catalog.latest(table) is None:
            self.graph.get(table)  # raises, naming the tables there are
        if version is None:
            found = self.catalog.latest(table)
            if found is None:
                raise NotMaterializedError(
                    f"table {table!r} has not been built yet",
                    hint=f"run `gristmill run +{table}`",
                )
            return found
        found = self.catalog.materialization(table, version)
        if found is None:
            versions = [m.version for m in self.catalog.history(table)]
            raise VersionNotFoundError(
                f"table {table!r} has no version {version}",
                hint=f"versions: {_ranges(versions)}"
                if versions
                else f"run `gristmill run +{table}`",
            )
        return found

    @requires(Do.READ_ROWS)
    def read(
        self,
        table: str,
        version: int | None = None,
        *,
        limit: int | None = None,
        columns: list[str] | None = None,
        as_: Frame = "arrow",
    ) -> Any:
        """A table version as Arrow (default), Polars or pandas."""
        m = self.materialization(table, version)
        data = self.lake.read(table, m.version, columns=columns, limit=limit)
        return _frame(self.masked(table, data), as_)

    @requires(Do.READ_ROWS)
    def sample(
        self, table: str, version: int | None = None, *, limit: int, quarantined: bool = False
    ) -> TableSample:
        """A version's first rows, or its quarantined rows, with what the catalog knows."""
        m = self.materialization(table, version)
        data = (
            self.quarantine(table, m.version, limit=limit)
            if quarantined
            else self.read(table, m.version, limit=limit)
        )
        return TableSample(table, m.version, m.rows, m.quarantined, m.quarantine_counts, data)

    @requires(Do.READ_ROWS)
    def quarantine(
        self, table: str, version: int | None = None, limit: int | None = None
    ) -> pa.Table:
        m = self.materialization(table, version)
        name = self.lake.quarantine_name(table)
        import pyarrow as pa

        if not self.lake.exists(name):
            return pa.table({})
        import pyarrow.compute as pc

        data = self.lake.read(name, self.lake.latest_version(name) or 0)
        data = data.filter(pc.equal(data["_table_version"], m.version))
        data = data.slice(0, limit) if limit is not None else data
        return self.masked(table, data)

    @requires(Do.READ)
    def history(self, table: str) -> list[VersionInfo]:
        self.materialization(table)
        return [_version_info(m) for m in self.catalog.history(table)]

    @requires(Do.READ)
    def runs(
        self, limit: int = 20, *, status: str | None = None, kind: str | None = None
    ) -> list[RunInfo]:
        """The newest runs first, queued ones included; ``status``/``kind`` filter them."""
        for value, known, what in ((status, STATUSES, "status"), (kind, KINDS, "kind")):
            if value is not None and value not in known:
                raise UnknownRunError(
                    f"unknown run {what} {value[:40]!r}", hint=f"one of: {', '.join(known)}"
                )
        rows = self.catalog.run_store.list(status=status, kind=kind, limit=limit)
        return [_run_info(r) for r in rows]

    @requires(Do.READ)
    def run_log(self, run_id: str) -> str:
        """The log the scheduler kept of a run (by id or unique prefix)."""
        record = self.catalog.run_store.get(run_id)
        path = self.state_dir / "logs" / f"{record.run_id}.log"
        if not path.is_file():
            raise NotFoundError(
                f"run {record.run_id[:12]} has no log",
                hint="runs the scheduler runs keep a log; `gristmill run` shows its own output",
            )
        return path.read_text(errors="replace")

    @requires(Do.READ)
    def run_info(self, run_id: str) -> RunInfo:
        """One run (by id or unique prefix) with its steps."""
        record = self.catalog.run_store.get(run_id)
        steps = [
            {
                "table": s.table_name,
                "kind": s.kind,
                "status": s.status,
                "reason": s.reason,
                "version": s.version,
                "engine": s.engine,
                "engine_reason": s.engine_reason,
                "error": s.error,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
            }
            for s in self.catalog.steps(record.run_id)
        ]
        info = _run_info(record)
        return RunInfo(**{**info.__dict__, "steps": steps})

    @requires(Do.READ)
    def lineage(
        self, table: str, *, upstream: bool = True, version: int | None = None
    ) -> LineageNode:
        """Upstream: the exact versions this version read, down to source files.
        Downstream: the tables that read this one (latest versions)."""
        node = self.graph.get(table)
        m = self.catalog.latest(table) if version is None else self.materialization(table, version)
        if upstream:
            inputs = m.inputs if m else {d: None for d in node.dependencies}
            children = [self._upstream(dep, v) for dep, v in sorted(inputs.items())]
        else:
            children = [self.lineage(d, upstream=False) for d in self.graph.downstream[table]]
        files = [f.path for f in self._all_files(table, m)] if isinstance(node, FileSource) else []
        return LineageNode(
            name=table,
            kind=node.kind.value,
            version=m.version if m else None,
            inputs=children,
            files=files,
        )

    def _upstream(self, table: str, version: int | None) -> LineageNode:
        return self.lineage(table, upstream=True, version=version)

    def _all_files(self, table: str, m: Materialization | None) -> list[Any]:
        """Files behind a source version: those of the last overwrite and appends since."""
        if m is None:
            return []
        history = [h for h in self.catalog.history(table) if h.version <= m.version]
        start = max((h.version for h in history if h.mode == "overwrite"), default=0)
        return [f for h in history if h.version >= start for f in h.files]


def _definitions_stamp(root: Path, project: Project) -> tuple[tuple[str, int, int], ...]:
    """Path, modification time and size of every file the definitions are read from."""
    config = project.config
    paths = [root / "gristmill.toml", *root.glob("*.py")]
    paths += [root / m for m in config.modules or []]
    paths += sorted((root / config.sql).glob("**/*.sql"))
    out = []
    for path in sorted(set(paths)):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _declared(node: Any) -> list[dict[str, str]]:
    contract = getattr(node, "contract", None)
    return [{"name": c, "type": t} for c, t in contract.columns.items()] if contract else []


def _frame(data: pa.Table, as_: Frame) -> Any:
    if as_ == "arrow":
        return data
    if as_ == "polars":
        try:
            import polars as pl
        except ModuleNotFoundError:
            raise MissingExtraError("polars", "polars") from None
        return pl.from_arrow(data)
    try:
        import pandas  # noqa: F401
    except ModuleNotFoundError:
        raise MissingExtraError("pandas", "pandas") from None
    return data.to_pandas()


def _ranges(versions: list[int]) -> str:
    if not versions:
        return "none"
    return f"{versions[0]}..{versions[-1]}" if len(versions) > 3 else ", ".join(map(str, versions))


def _version_info(m: Materialization) -> VersionInfo:
    return VersionInfo(
        table=m.table_name,
        version=m.version,
        run_id=m.run_id,
        mode=m.mode,
        fingerprint=m.fingerprint,
        rows=m.rows,
        rows_added=m.rows_added,
        quarantined=m.quarantined,
        quarantine_counts=m.quarantine_counts,
        inputs=m.inputs,
        files=[f.path for f in m.files],
        built_at=m.finished_at,
        duration_s=round(m.duration_s, 3),
        recovered=m.recovered,
        stats=m.stats,
    )


def _run_info(r: RunRecord) -> RunInfo:
    return RunInfo(
        run_id=r.run_id,
        status=r.status,
        started_at=r.started_at,
        finished_at=r.finished_at,
        selection=r.selection,
        full_refresh=r.full_refresh,
        summary=r.summary,
        kind=r.kind,
        requested_by=r.requested_by,
        priority=r.priority,
        created_at=r.created_at,
        owner=r.owner,
        cancel_requested=r.cancel_requested_at is not None,
        error=r.error,
        params=r.params,
        attempt=r.attempt,
        retry_of=r.retry_of,
        not_before=r.not_before,
        timeout_s=r.timeout_s,
    )


def build_request(
    selection: Sequence[str],
    full_refresh: bool,
    force: Sequence[str],
    requested_by: str | None,
    priority: int = 0,
    tags: Sequence[str] = (),
) -> RunRequest:
    params: dict[str, Any] = {"select": list(selection)}
    if force:
        params["force"] = list(force)
    if tags:
        params["tags"] = list(dict.fromkeys(tags))
    return RunRequest(
        kind="build",
        selection=" ".join(selection),
        full_refresh=full_refresh,
        params=params,
        requested_by=requested_by or "user:" + os_user(),
        priority=priority,
    )


def backfill_request(backfill: Backfill, requested_by: str | None) -> RunRequest:
    span = f"{backfill.first or 'first'}..{backfill.last or 'latest'}"
    return RunRequest(
        kind="backfill",
        selection=f"{backfill.table} {span}",
        full_refresh=False,
        params={"backfill": asdict(backfill)},
        requested_by=requested_by or "user:" + os_user(),
    )


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


__all__ = ["RunInProgressError", "RunOutcome", "StepStatus", "Workspace"]
