"""The runner: executes a plan's steps in dependency order, independent ones in parallel.

Each step reads the exact input versions recorded in the catalog at the moment it starts,
writes one Delta commit, then records the materialization. A failed step blocks its
downstream steps; the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from gristmill import failpoints
from gristmill.definitions.config import PiiSettings
from gristmill.definitions.graph import Graph
from gristmill.definitions.objects import Definition, StepKind
from gristmill.definitions.partitions import Partition
from gristmill.errors import GristmillError, StepCancelled, StepFailed, is_transient
from gristmill.execution.engines import Engine
from gristmill.execution.engines.choice import EngineChoice
from gristmill.execution.reporter import Reporter, StepResult, StepStatus
from gristmill.planning import Action, Plan, PlannedStep
from gristmill.planning.fingerprint import Fingerprint
from gristmill.planning.partitions import chunks
from gristmill.storage.artifacts import ArtifactStore
from gristmill.storage.catalog import Catalog, Materialization, PartitionRecord, StepRecord
from gristmill.storage.catalog.records import utcnow
from gristmill.storage.lake import Lake

logger = logging.getLogger(__name__)


def _unexpected(step: PlannedStep, exc: Exception) -> StepFailed:
    """A step's error that is not one of ours (a bug, an engine failure) as a StepFailed
    naming the step; the traceback goes to the log (`runs ID` shows the message only)."""
    logger.debug("step %s failed:\n%s", step.name, traceback.format_exc())
    error = StepFailed(f"{step.name}: {type(exc).__name__}: {exc}")
    error.transient = is_transient(exc)
    return error


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    steps: tuple[StepResult, ...]
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status in ("success", "noop")

    @property
    def failed_steps(self) -> list[StepResult]:
        return [s for s in self.steps if s.status is StepStatus.FAILED]

    @property
    def transient(self) -> bool:
        """Failed only of errors that may pass if the run is tried again."""
        failed = self.failed_steps
        return bool(failed) and all((s.error or {}).get("transient") for s in failed)

    def error(self) -> str | None:
        """What a failed run's record says: its first failed step's error."""
        failed = self.failed_steps
        if not failed:
            return None
        message = str((failed[0].error or {}).get("message", "failed"))
        more = f"; {len(failed) - 1} more step(s) failed" if len(failed) > 1 else ""
        return message + more + (" (transient)" if self.transient else "")


class Runner:
    def __init__(
        self,
        *,
        root: Path,
        graph: Graph,
        catalog: Catalog,
        lake: Lake,
        engine_factory: Callable[[str | None], Engine],
        reporter: Reporter,
        engine_chooser: Callable[[Definition, Mapping[str, int]], EngineChoice] | None = None,
        parallelism: int,
        artifacts: ArtifactStore,
        pii: PiiSettings | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.pii = pii or PiiSettings()
        """Where sources find the key of personal-data pseudonyms."""
        self.root = root
        self.graph = graph
        self.catalog = catalog
        self.lake = lake
        self._engine_factory = engine_factory
        self._engine_chooser = engine_chooser
        self._choices: dict[str, EngineChoice] = {}
        """Each step's engine and why, chosen as it starts (recorded with the step)."""
        self._engines: dict[str, Engine] = {}
        """Started at the first step that needs each (Spark only for pinned steps)."""
        self._engine_lock = threading.Lock()
        self.reporter = reporter
        self.parallelism = parallelism
        self._should_stop: Callable[[], bool] = lambda: False
        self.replan: Callable[[PlannedStep, dict[str, int]], PlannedStep] | None = None
        """Plans a partitioned step again with the input versions this run produced."""

    def run(
        self, plan: Plan, run_id: str, should_stop: Callable[[], bool] | None = None
    ) -> RunResult:
        """Every step of the plan; ``should_stop`` (a cancel request), asked before each
        step starts, cancels the steps not started yet (the running ones finish)."""
        try:
            return self._run(plan, run_id, should_stop or (lambda: False))
        finally:
            with self._engine_lock:
                engines, self._engines = self._engines, {}
            for engine in engines.values():
                engine.close()

    def _require_lake_table(self, step: PlannedStep) -> None:
        """Refuse to write a table whose versions the catalog holds but whose Delta table
        is gone from the lake (deleted outside gristmill): its next commit would be a
        version 0 again, and a recorded version number never changes its rows."""
        if step.kind is StepKind.MODEL or self.lake.exists(step.name):
            return
        recorded = self.catalog.latest(step.name)
        if recorded is None:  # a table's first build
            return
        raise StepFailed(
            f"{step.name}: the catalog records versions up to v{recorded.version}, but its "
            f"Delta table is gone from the lake ({self.lake.uri(step.name)})",
            hint="restore the table's folder (or prefix) from a backup; versions are "
            "immutable, so gristmill does not build version 0 again under the same name",
        )

    def _engine_for_step(self, step: PlannedStep) -> Engine:
        choice = self._choices.get(step.name)
        name = choice.engine if choice is not None else None  # None: the project's default
        return self._engine(name)

    def _engine(self, name: str | None) -> Engine:
        with self._engine_lock:
            key = name or ""
            if key not in self._engines:
                self._engines[key] = self._engine_factory(name)
            return self._engines[key]

    def _choose(self, step: PlannedStep) -> EngineChoice | None:
        """The step's engine for the input versions it will read (None: no chooser, or an
        input missing, which the step itself then reports)."""
        if self._engine_chooser is None:
            return None
        try:
            versions = self._input_versions(step)
            choice = self._engine_chooser(self.graph.nodes[step.name], versions)
        except GristmillError:
            return None
        with self._engine_lock:
            self._choices[step.name] = choice
        return choice

    def _run(self, plan: Plan, run_id: str, should_stop: Callable[[], bool]) -> RunResult:
        started = time.perf_counter()
        interrupted = threading.Event()
        # Ctrl-C or SIGTERM (a KeyboardInterrupt in this thread) also stops a step between
        # its partition batches: the running batch ends, the interrupt then goes on
        self._should_stop = lambda: interrupted.is_set() or should_stop()
        # Exact input versions: the catalog's at the start, then what this run commits.
        self._versions = self.catalog.latest_versions()
        self._at_start = dict(self._versions)
        self._reasons: dict[str, str] = {}
        results: dict[str, StepResult] = {
            s.name: StepResult(s.name, s.kind.value, StepStatus.SKIPPED, s.reason)
            for s in plan.steps
            if s.action is Action.SKIP
        }
        for result in results.values():
            self.reporter.step_finished(result)
        pending = {s.name: s for s in plan.to_run}
        running: dict[Future[StepResult], str] = {}
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="step") as pool:
            try:
                self._loop(run_id, pool, pending, running, results, should_stop)
            except KeyboardInterrupt:
                interrupted.set()
                raise
        ordered = tuple(results[s.name] for s in plan.steps)
        failed = any(r.status in (StepStatus.FAILED, StepStatus.BLOCKED) for r in ordered)
        status = "failed" if failed else ("noop" if plan.is_noop else "success")
        if any(r.status is StepStatus.CANCELLED for r in ordered):
            status = "cancelled"
        return RunResult(run_id, status, ordered, time.perf_counter() - started)

    def _loop(
        self,
        run_id: str,
        pool: ThreadPoolExecutor,
        pending: dict[str, PlannedStep],
        running: dict[Future[StepResult], str],
        results: dict[str, StepResult],
        should_stop: Callable[[], bool],
    ) -> None:
        cancelled = False
        while pending or running:
            if pending and not cancelled and should_stop():
                cancelled = True
                for name in list(pending):
                    results[name] = self._cancelled(run_id, pending.pop(name))
            for name in self._ready(pending, set(running.values())):
                if len(running) >= self.parallelism:
                    break
                step = pending.pop(name)
                blocker = self._blocker(step, results)
                if blocker:
                    results[name] = self._blocked(run_id, step, blocker)
                    continue
                self.reporter.step_started(name, step.reason)
                running[pool.submit(self._execute, run_id, step)] = name
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
                self.reporter.step_finished(results[name])

    @staticmethod
    def _ready(pending: dict[str, PlannedStep], running: set[str]) -> list[str]:
        """Steps none of whose inputs is still waiting or building."""
        return [
            name
            for name, step in pending.items()
            if not any(d in pending or d in running for d in step.dependencies)
        ]

    def _blocker(self, step: PlannedStep, results: dict[str, StepResult]) -> str | None:
        for dep in step.dependencies:
            result = results.get(dep)
            if result and result.status in (StepStatus.FAILED, StepStatus.BLOCKED):
                return dep
        return None

    def _blocked(self, run_id: str, step: PlannedStep, blocker: str) -> StepResult:
        result = StepResult(
            step.name,
            step.kind.value,
            StepStatus.BLOCKED,
            f"blocked: upstream {blocker!r} did not build",
        )
        self.catalog.record_step(
            StepRecord(
                run_id, step.name, step.kind.value, "blocked", result.reason, None, None, None, None
            )
        )
        self.reporter.step_finished(result)
        return result

    def _cancelled(self, run_id: str, step: PlannedStep) -> StepResult:
        result = StepResult(
            step.name, step.kind.value, StepStatus.CANCELLED, "cancelled before it started"
        )
        self.catalog.record_step(
            StepRecord(run_id, step.name, step.kind.value, "cancelled", result.reason, *[None] * 4)
        )
        self.reporter.step_finished(result)
        return result

    def _execute(self, run_id: str, step: PlannedStep) -> StepResult:
        started_at = utcnow()
        clock = time.perf_counter()
        record = StepRecord(
            run_id, step.name, step.kind.value, "running", step.reason, started_at, None, None, None
        )
        choice = self._choose(step)
        if choice is not None:
            record = replace(record, engine=choice.engine, engine_reason=choice.reason)
        self.catalog.record_step(record)
        try:
            materialization = self._materialize(run_id, step, record)
        except StepCancelled as exc:
            self.catalog.record_step(
                replace(record, status="cancelled", finished_at=utcnow(), error=str(exc))
            )
            return StepResult(
                step.name,
                step.kind.value,
                StepStatus.CANCELLED,
                exc.message,
                duration_s=time.perf_counter() - clock,
                error=exc.to_dict(),
            )
        except GristmillError as exc:
            return self._failed(record, step, exc, time.perf_counter() - clock)
        except Exception as exc:  # a bug or an engine failure: the message on record
            error = _unexpected(step, exc)
            return self._failed(record, step, error, time.perf_counter() - clock)
        if step.partitions:  # a whole step's record is written with its commit (below)
            self.catalog.record_step(
                replace(
                    record, status="success", finished_at=utcnow(), version=materialization.version
                )
            )
        return StepResult(
            name=step.name,
            kind=step.kind.value,
            status=StepStatus.SUCCESS,
            reason=self._reasons.get(step.name, step.reason),
            version=materialization.version,
            mode=materialization.mode,
            rows=materialization.rows,
            rows_added=materialization.rows_added,
            quarantined=materialization.quarantined,
            quarantine_counts=materialization.quarantine_counts,
            files=tuple(f.path for f in materialization.files),
            duration_s=time.perf_counter() - clock,
            warnings=tuple(materialization.stats.get("warnings", ())),
        )

    def _failed(
        self, record: StepRecord, step: PlannedStep, exc: GristmillError, seconds: float
    ) -> StepResult:
        self.catalog.record_step(
            replace(record, status="failed", finished_at=utcnow(), error=str(exc))
        )
        return StepResult(
            step.name,
            step.kind.value,
            StepStatus.FAILED,
            step.reason,
            duration_s=seconds,
            error=exc.to_dict(),
        )

    def _materialize(self, run_id: str, step: PlannedStep, record: StepRecord) -> Materialization:
        if step.partitions:
            return self._materialize_partitions(run_id, step, record.started_at)
        return self._commit_step(run_id, step, record.started_at, record=record)

    def _materialize_partitions(
        self, run_id: str, step: PlannedStep, started_at: object
    ) -> Materialization:
        """A partitioned table's partitions, a batch of neighbours per query and commit;
        each batch's partitions are recorded as soon as it commits (a run killed midway
        leaves them built), a failed batch's as failed while the others go on, and a
        cancel request stops before the next batch."""
        definition = self.graph.nodes[step.name]
        partitioning = getattr(definition, "partitions", None)
        assert partitioning is not None
        moved = [d for d in step.dependencies if self._versions.get(d) != self._at_start.get(d)]
        if moved and self.replan is not None:  # upstream committed in this run: look again
            step = self.replan(step, self._input_versions(step))
            self._reasons[step.name] = f"{step.reason} (planned again after its upstream built)"
            if not step.to_build:
                latest = self.catalog.latest(step.name)
                if latest is not None:
                    return replace(latest, rows_added=0)
        last: Materialization | None = None
        written = 0
        failures: list[tuple[list[str], GristmillError]] = []
        batches = chunks(step.partitions, partitioning.batch)
        for number, batch in enumerate(batches):
            keys = [p.key for p in batch]
            if number and self._should_stop():
                raise StepCancelled(
                    f"{step.name}: cancelled after {number} of {len(batches)} batch(es); "
                    f"{sum(len(b) for b in batches[number:])} partition(s) left to build",
                    hint="run it again to build the rest (a forced backfill: with --force "
                    "and the same range)",
                )
            try:
                last = self._commit_step(run_id, step, started_at, tuple(batch))
            except GristmillError as exc:
                failures.append((keys, exc))
                self._record_partitions(run_id, step, keys, None, str(exc))
                continue
            except Exception as exc:  # a bug or an engine failure: record it, go on
                error = _unexpected(step, exc)
                failures.append((keys, error))
                self._record_partitions(run_id, step, keys, None, str(error))
                continue
            written += last.rows_added
            self._record_partitions(run_id, step, keys, last, None)
        if failures:
            failed = sum(len(k) for k, _ in failures)
            built = len(step.to_build) - failed
            keys, first = failures[0]
            done = f"{built} built" + (
                f" (up to v{last.version}, {written} rows written)" if last is not None else ""
            )
            error = StepFailed(
                f"{failed} of {len(step.to_build)} partition(s) failed, {done}; "
                f"{keys[0]}{'…' + keys[-1] if len(keys) > 1 else ''}: {first.message}",
                location=first.location,
                hint=first.hint
                or "the next run (or backfill) of the range retries the failed ones",
            )
            error.transient = all(e.transient for _, e in failures)
            raise error
        assert last is not None
        return replace(last, rows_added=written)

    def _record_partitions(
        self,
        run_id: str,
        step: PlannedStep,
        keys: list[str],
        done: Materialization | None,
        error: str | None,
    ) -> None:
        now = utcnow()
        self.catalog.record_partitions(
            [
                PartitionRecord(
                    table_name=step.name,
                    partition_key=key,
                    status="success" if done else "failed",
                    code_hash=step.code_hash,
                    inputs=dict(done.inputs) if done else self._input_versions(step),
                    version=done.version if done else None,
                    run_id=run_id,
                    updated_at=now,
                    error=error,
                )
                for key in keys
            ]
        )

    def _commit_step(
        self,
        run_id: str,
        step: PlannedStep,
        started_at: object,
        partitions: tuple[Partition, ...] = (),
        *,
        record: StepRecord | None = None,
    ) -> Materialization:
        """Run one step's query and commit it; ``record`` (the running step's) is closed as
        a success in the catalog transaction that stores the new version."""
        definition = self.graph.nodes[step.name]
        inputs = self._input_versions(step)
        self._require_lake_table(step)
        previous = (
            self.catalog.latest(step.name)
            if step.kind in (StepKind.INGEST, StepKind.MODEL)
            else None
        )
        if step.files:
            input_state: dict[str, object] = {f.path: [f.size, f.mtime_ns] for f in step.files}
            if previous and step.mode.value == "append":
                input_state["__previous__"] = previous.fingerprint
        else:
            input_state = dict(inputs)
        if partitions:
            input_state["__partitions__"] = [p.key for p in partitions]
        fingerprint = Fingerprint.of(step.code_hash, input_state)
        template = Materialization(
            table_name=step.name,
            version=-1,
            run_id=run_id,
            kind=step.kind.value,
            mode=step.mode.value,
            fingerprint=fingerprint.value,
            code_hash=step.code_hash,
            inputs=inputs,
            rows=0,
            rows_added=0,
            quarantined=0,
            schema=[],
            started_at=started_at,  # type: ignore[arg-type]
            finished_at=started_at,  # type: ignore[arg-type]
        )
        from gristmill.execution.steps import StepContext, run_step

        engine = self._engine_for_step(step)
        with engine.session() as session:
            ctx = StepContext(
                self.root,
                self.lake,
                session,
                step,
                definition,
                inputs,
                template,
                previous,
                engine_scans_parquet=engine.SUPPORTS_PARQUET_SCAN,
                nodes=self.graph.nodes,
                state=self.catalog.reader(),
                artifacts=self.artifacts,
                partitions=partitions,
                pii=self.pii,
                duckdb=lambda: self._engine("duckdb"),
            )
            output = run_step(ctx)
        materialization = replace(output.materialization, finished_at=utcnow())
        failpoints.hit("after_commit", step.name)
        done = None
        if record is not None:
            done = replace(
                record,
                status="success",
                finished_at=materialization.finished_at,
                version=materialization.version,
            )
        self.catalog.record_materialization(
            materialization, model_version=output.model_version, step=done
        )
        with self._engine_lock:
            self._versions[step.name] = materialization.version
        return materialization

    def _input_versions(self, step: PlannedStep) -> dict[str, int]:
        versions: dict[str, int] = {}
        for dep in step.dependencies:
            latest = self._versions.get(dep)
            if latest is None:
                raise StepFailed(
                    f"{step.name}: input {dep!r} has never been built",
                    hint=f"run `gristmill run +{step.name}` to build it with its inputs",
                )
            versions[dep] = latest
        return versions
