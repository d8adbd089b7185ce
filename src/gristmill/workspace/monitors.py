"""Monitors as the CLI, the HTTP app and the UI see them: evaluate, store, alert, retrain.

One evaluation reads its reference and current data, computes its findings (execution
layer), stores them in the catalog as a time series in one transaction, and for each
alert records it, POSTs the monitor's webhook and runs its trigger. A retrain trigger
runs the model and what it depends on (a fresh training set when new labels arrived),
then promotes the newest version only through its gates: with ``approval="auto"`` it
becomes the champion if they pass, with ``"manual"`` it waits as a pending promotion
that ``gristmill promote`` completes. Every step lands in the model's audit trail.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from gristmill.access import Action, requires
from gristmill.definitions.monitors import (
    LOG,
    LOWER_IS_BETTER,
    Approval,
    DriftMonitor,
    Monitor,
    PerformanceMonitor,
    QualityMonitor,
    ServiceMonitor,
    timestamp_of,
)
from gristmill.definitions.objects import Table
from gristmill.errors import GateRefused, GristmillError, UnknownNameError
from gristmill.execution.monitoring.findings import Finding, Outcome, State, failed, skipped
from gristmill.storage.catalog import (
    Catalog,
    ModelEvent,
    ModelVersion,
    MonitorAlert,
    MonitorResult,
)
from gristmill.storage.catalog.records import utcnow
from gristmill.storage.catalog.runs import RunRequest
from gristmill.workspace.shapes import AlertInfo, MonitorValue, shape_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gristmill.execution.engines import Session
    from gristmill.execution.ml.bundle import LoadedModel
    from gristmill.execution.monitoring.drift import Pair
    from gristmill.workspace.core import RunOutcome, Workspace

REFERENCE = "__gm_reference"
CURRENT = "__gm_current"
WINDOW = "__gm_window"
LABELS = "__gm_labels"
LOG_ON_DUCKDB = "a prediction log's features are JSON, read on DuckDB"
RETRAIN_PRIORITY = 100
"""A monitor's retrain goes ahead of routine queued work."""


class EvaluationWindow(TypedDict):
    """The span an evaluation judged and the champion it judged, as ``Outcome`` fields."""

    window_start: datetime
    window_end: datetime
    model_version: int


class ResultBase(TypedDict):
    """The ``MonitorResult`` fields every row of one evaluation shares."""

    evaluation_id: str
    monitor: str
    type: str
    evaluated_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    model_version: int | None


@dataclass(frozen=True)
class Evaluation:
    """One monitor's evaluation as callers see it."""

    monitor: str
    type: str
    evaluation_id: str
    evaluated_at: datetime
    state: str
    rows: int
    model_version: int | None
    window_start: datetime | None
    window_end: datetime | None
    alerts: list[str]
    action: str | None
    action_details: dict[str, Any]
    skipped: str
    error: str
    findings: int
    engine: str = ""
    """Where a drift monitor's statistics were computed (empty for other monitors)."""
    engine_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("evaluated_at", "window_start", "window_end"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


@dataclass(frozen=True)
class MonitorStatus:
    monitor: str
    type: str
    subject: str
    """What the monitor watches: a service or a table."""
    state: str
    """ok, alert, skipped, error, or never (not evaluated yet)."""
    evaluated_at: datetime | None
    headline: dict[str, Any] | None
    """The finding closest to (or furthest past) its threshold."""
    trend: list[float | None] = field(default_factory=list)
    """The headline statistic over the last evaluations, oldest first."""
    alerts: int = 0

    @property
    def summary(self) -> str:
        """The headline in words: "amount psi = 0.51 (threshold 0.2)", or why it did not judge."""
        head = self.headline or {}
        value, threshold = head.get("value"), head.get("threshold")
        if value is None or threshold is None:
            return str(head.get("reason") or "")
        return f"{head['subject']} {head['statistic']} = {value:.4g} (threshold {threshold:g})"

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["evaluated_at"] = self.evaluated_at.isoformat() if self.evaluated_at else None
        data["summary"] = self.summary
        return data


class Monitors:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def catalog(self) -> Catalog:
        return self.ws.catalog

    def spec(self, name: str) -> Monitor:
        found = self.ws.project.monitors.get(name)
        if found is None:
            raise UnknownNameError("monitor", name, sorted(self.ws.project.monitors))
        return found

    # ---- evaluation ------------------------------------------------------------------

    @requires(Action.RUN)
    def run(
        self,
        names: list[str] | None = None,
        *,
        only_changed: bool = False,
        now: datetime | None = None,
        run_triggered: bool = False,
        requested_by: str | None = None,
    ) -> list[Evaluation]:
        """Evaluate monitors (all by default); ``only_changed``: those whose inputs changed
        since their last evaluation (what ``gristmill run`` does). An alert's retrain is
        queued as a run of its own; ``run_triggered`` runs those runs here and now, one
        after the other (the CLI in the foreground), else the scheduler runs them."""
        specs = [self.spec(n) for n in names] if names else list(self.ws.project.monitors.values())
        due = []
        for spec in specs:
            key = self._input_key(spec)
            if only_changed and key is not None and key == self._last_key(spec.name):
                continue
            due.append((spec, key))
        if not due:
            return []
        out = []
        # the evaluations are a run of kind monitor: on record with the others, never
        # waiting for a build (it writes no table)
        request = RunRequest(
            kind="monitor",
            selection=" ".join(names or []),
            params={"monitors": [spec.name for spec, _ in due], "targets": []},
            requested_by=requested_by or self.ws.principal.name,
        )
        with self.ws.coordinator.start(request) as active:
            for spec, key in due:
                out.append(self._evaluate(spec, key, now or utcnow()))
            broken = [e.monitor for e in out if e.state == "error"]
            active.finish(
                "failed" if broken else "success",
                {
                    "evaluations": [
                        {"monitor": e.monitor, "state": e.state, "action": e.action} for e in out
                    ]
                },  # fmt: skip
                f"monitor(s) could not be evaluated: {', '.join(broken)}" if broken else None,
            )
        if run_triggered:
            out = [self._run_triggered(e) for e in out]
        return out

    def _run_triggered(self, evaluation: Evaluation) -> Evaluation:
        run_id = evaluation.action_details.get("run_id")
        if evaluation.action != "queued" or not run_id:
            return evaluation
        self.ws.work(only=str(run_id))
        settled = [
            a
            for a in self.alerts(evaluation.monitor)
            if a.evaluation_id == evaluation.evaluation_id
        ]
        if not settled or settled[-1].action == "queued":
            return evaluation  # another process took the run; `gristmill runs` shows it
        return replace(
            evaluation, action=settled[-1].action, action_details=dict(settled[-1].details or {})
        )

    def _evaluate(self, spec: Monitor, key: str | None, now: datetime) -> Evaluation:
        evaluation_id = uuid.uuid4().hex
        try:
            outcome = self._outcome(spec, now)
        except GristmillError as exc:
            outcome = failed(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            key = None  # tried again next time, whatever changed
        results = self._results(spec, evaluation_id, now, outcome, key)
        alerts: list[MonitorAlert] = []
        action, details = None, {}
        if outcome.alerts:
            message = f"{spec.name}: " + "; ".join(f.describe() for f in outcome.alerts[:5])
            if len(outcome.alerts) > 5:
                message += f"; and {len(outcome.alerts) - 5} more"
            details = self._notify(spec, message, evaluation_id, outcome)
            action = "recorded"
            if spec.on_alert is not None:
                action, more = self._queue_retrain(spec, message, evaluation_id)
                details.update(more)
            alerts.append(
                MonitorAlert(
                    evaluation_id=evaluation_id,
                    monitor=spec.name,
                    at=now,
                    message=message,
                    action=action,
                    details=details,
                )
            )
        self.catalog.record_evaluation(results, alerts)
        return Evaluation(
            monitor=spec.name,
            type=spec.type,
            evaluation_id=evaluation_id,
            evaluated_at=now,
            state=outcome.state.value,
            rows=outcome.rows,
            model_version=outcome.model_version,
            window_start=outcome.window_start,
            window_end=outcome.window_end,
            alerts=[f.describe() for f in outcome.alerts],
            action=action,
            action_details=details,
            skipped=outcome.skipped,
            error=outcome.error,
            findings=len(outcome.findings),
            engine=outcome.engine,
            engine_reason=outcome.engine_reason,
        )

    def _outcome(self, spec: Monitor, now: datetime) -> Outcome:
        if isinstance(spec, QualityMonitor):
            return self._quality(spec, now)
        assert isinstance(spec, DriftMonitor | PerformanceMonitor)
        # a service monitor judges the service's champion: nothing to judge without one
        service = self.ws.services.spec(spec.service)
        champion = self.catalog.aliases(service.model).get(service.alias)
        if champion is None:
            return skipped(f"{service.model} has no {service.alias} yet (gristmill promote)")
        version = self.ws.models.version(service.model, champion)
        if isinstance(spec, DriftMonitor):
            return self._drift(spec, version, now)
        return self._performance(spec, version, now)

    def _drift(self, spec: DriftMonitor, version: ModelVersion, now: datetime) -> Outcome:
        from gristmill.execution.engines.choice import EngineChoice
        from gristmill.execution.monitoring import drift
        from gristmill.execution.steps import expose
        from gristmill.serving.log import log_table

        champion = version.version
        model = self.ws.models.load(version.model, champion)
        features = list(model.manifest.features)  # all of them, to score the rows
        watched = [
            f.name
            for f in features
            if (spec.features is None or f.name in spec.features) and f.name not in spec.exclude
        ]
        columns = ", ".join(f'"{f.name}"' for f in features)
        reference = {version.training_set: version.training_set_version}
        if spec.current == LOG:
            current, choice = log_table(spec.service), EngineChoice("duckdb", LOG_ON_DUCKDB)
            logged = self.ws.lake.latest_version(current)
            if logged is None:
                return skipped("no predictions logged yet", model_version=champion)
        else:
            current, logged = spec.current, self.ws.materialization(spec.current).version
            choice = self.ws.engine_chooser.for_data({**reference, current: logged})
        on = {"engine": choice.engine, "engine_reason": choice.reason}
        with self.ws.engine_session(choice.engine) as (session, scan):
            expose(
                session,
                self.ws.lake,
                version.training_set,
                version.training_set_version,
                alias=REFERENCE,
                scan=scan,
            )
            expose(session, self.ws.lake, current, logged, alias=CURRENT, scan=scan)
            if spec.current == LOG:
                start, end = now - spec.window, now
                rows_sql = drift.log_rows_sql(CURRENT, features, start, end)
            else:
                timestamp = timestamp_of(self.ws.graph.get(spec.current))
                assert timestamp is not None
                (newest,) = session.rows(f'SELECT max("{timestamp}") FROM {CURRENT}')[0]
                if newest is None:
                    return skipped(f"{spec.current} has no rows", model_version=champion, **on)
                end = _utc(newest)
                start = end - spec.window
                rows_sql = drift.table_rows_sql(CURRENT, features, timestamp, start)
            # The window's rows once, in the engine (which spills); then one column at a time.
            session.materialize(WINDOW, rows_sql)
            (rows,) = session.rows(f"SELECT count(*) FROM {WINDOW}")[0]
            window = EvaluationWindow(window_start=start, window_end=end, model_version=champion)
            if rows < spec.min_rows:
                return skipped(
                    f"{rows} rows in the window; min_rows is {spec.min_rows}",
                    rows=rows,
                    **window,
                    **on,
                )
            if session.WRITES_FILES:  # Spark: its workers score, the engine aggregates
                found, charts = self._drift_by_workers(session, spec, model, watched, columns)
            else:
                found, charts = self._drift_here(session, spec, model, watched, columns)
        return Outcome(findings=found, rows=rows, charts=charts, **window, **on)

    def _drift_here(
        self,
        session: Session,
        spec: DriftMonitor,
        model: LoadedModel,
        watched: list[str],
        columns: str,
    ) -> tuple[list[Finding], dict[str, Any]]:
        """Scores and statistics in this process, a column at a time (DuckDB)."""
        from gristmill.execution.monitoring import drift

        reference_scores = drift.scores(session, f"SELECT {columns} FROM {REFERENCE}", model)
        if spec.current == LOG:  # the score the service answered with
            current_scores = drift.fetch(session, f"SELECT {drift.SCORE} FROM {WINDOW}")[0]
        else:
            current_scores = drift.scores(session, f"SELECT {columns} FROM {WINDOW}", model)
        pairs = drift.column_pairs(session, REFERENCE, WINDOW, watched)
        try:
            return drift.findings(
                itertools.chain(pairs, [(drift.SCORE, reference_scores, current_scores)]),
                dict(spec.thresholds),
            )
        finally:  # its reading thread is done with the session before the session closes
            pairs.close()

    def _drift_by_workers(
        self,
        session: Session,
        spec: DriftMonitor,
        model: LoadedModel,
        watched: list[str],
        columns: str,
    ) -> tuple[list[Finding], dict[str, Any]]:
        """Scores by the engine's workers, statistics aggregated by the engine (Spark):
        no row comes to this process."""
        from gristmill.execution.monitoring import drift

        files = self.ws.models.worker_files(model)
        with self.ws.lake.scratch("drift") as folder:
            for side, relation in (("reference", REFERENCE), ("current", WINDOW)):
                written = drift.scores_by_workers(
                    session,
                    f"SELECT {columns} FROM {relation}",
                    model,
                    files,
                    Path(folder) / side,
                )
                session.register_parquet(f"__gm_{side}_scores", written)
            drifts = drift.engine_drifts(session, REFERENCE, WINDOW, watched)
            score = drift.engine_drifts(
                session, "__gm_reference_scores", "__gm_current_scores", [drift.SCORE]
            )
            return drift.findings_of(itertools.chain(drifts, score), dict(spec.thresholds))

    def _performance(
        self, spec: PerformanceMonitor, version: ModelVersion, now: datetime
    ) -> Outcome:
        from gristmill.execution.monitoring import performance as perf
        from gristmill.execution.steps import expose
        from gristmill.serving.log import log_table

        champion = version.version
        model_spec = self.ws.models.spec(version.model)
        training_set = self.ws.graph.get(model_spec.training_set)
        entity = tuple(getattr(training_set, "entity", ()))
        tested = (version.metrics.get(spec.metric) or {}).get("value")
        labels = self.ws.materialization(spec.labels)
        with self.ws.engine_session() as (session, scan):
            expose(session, self.ws.lake, spec.labels, labels.version, alias=LABELS, scan=scan)
            if spec.predictions == LOG:
                name = log_table(spec.service)
                logged = self.ws.lake.latest_version(name)
                if logged is None:
                    return skipped("no predictions logged yet", model_version=champion)
                expose(session, self.ws.lake, name, logged, alias=CURRENT, scan=scan)
                predictions = perf.Predictions(CURRENT, entity, "at", from_log=True)
                end = now
            else:
                latest = self.ws.lake.latest_version(spec.predictions)
                if latest is None:
                    return skipped(f"no {spec.predictions} yet (gristmill score)")
                expose(session, self.ws.lake, spec.predictions, latest, alias=CURRENT, scan=scan)
                predictions = perf.Predictions(
                    CURRENT, entity, self._prediction_time(spec.predictions), from_log=False
                )
                newest, _ = session.rows(perf.prediction_span_sql(predictions))[0]
                if newest is None:
                    return skipped(f"{spec.predictions} is empty")
                end = _utc(newest)
            start = end - spec.window
            sql = perf.joined_sql(
                predictions,
                perf.Labels(LABELS, entity, spec.label_timestamp, spec.label),
                spec.horizon,
                start,
                end,
            )
            value, rows, positive = perf.measure(
                session,
                sql,
                model_spec.task,
                spec.metric,
                threshold=model_spec.threshold,
                seed=model_spec.seed,
            )
        window = EvaluationWindow(window_start=start, window_end=end, model_version=champion)
        if rows < spec.min_rows:
            return skipped(
                f"{rows} predictions with labels in the window; min_rows is {spec.min_rows}",
                rows=rows,
                **window,
            )
        if value["value"] is None:
            return skipped(
                f"{spec.metric} needs both classes; the window's {rows} labelled "
                f"predictions have one (positive rate {positive:.3g})",
                rows=rows,
                **window,
            )
        lower = spec.metric in LOWER_IS_BETTER
        limit = None
        if tested is not None:
            limit = tested + spec.max_drop if lower else tested - spec.max_drop
        details = {"low": value["low"], "high": value["high"], "test_value": tested}
        found = [
            Finding(
                spec.metric, "value", value["value"], limit, above_alerts=lower, details=details
            ),
            Finding("labels", "matched_rows", float(rows)),
            Finding("labels", "positive_rate", positive),
        ]
        if tested is not None:
            change = value["value"] - tested
            found.append(Finding(spec.metric, "drop", -change if not lower else change))
        return Outcome(findings=found, rows=rows, **window)

    def _quality(self, spec: QualityMonitor, now: datetime) -> Outcome:
        from gristmill.execution.monitoring import quality

        history = self.catalog.history(spec.table)
        if not history:
            return skipped(f"{spec.table} has no version yet (gristmill run)")
        latest = history[-1]
        previous = history[-2] if len(history) > 1 else None
        found = quality.table_findings(
            latest,
            previous,
            volume_change=spec.volume_change,
            max_quarantine_share=spec.max_quarantine_share,
        )
        node = self.ws.graph.get(spec.table)
        feature = node.feature if isinstance(node, Table) else None
        if spec.freshness is not None:
            newest: datetime | None = latest.finished_at
            if feature is not None:
                data = self.ws.lake.read(spec.table, latest.version, columns=[feature.timestamp])
                import pyarrow.compute as pc

                top = pc.max(data[feature.timestamp]).as_py()
                newest = _utc(top) if top is not None else None
            found.append(quality.freshness_finding(newest, now, spec.freshness))
        charts: dict[str, dict[str, Any]] = {}
        if previous is not None:
            keys = set(feature.entity) | {feature.timestamp} if feature else set()
            columns = [
                c["name"]
                for c in latest.schema
                if c["name"] not in keys
                and (spec.columns is None or c["name"] in spec.columns)
                and _comparable(c["type"])
            ]
            pairs = self._added_and_before(spec.table, latest.version, previous.version, columns)
            more, charts = quality.column_findings(pairs, spec.distribution_psi)
            found += more
        return Outcome(findings=found, rows=latest.rows, model_version=None, charts=charts)

    def _added_and_before(
        self, table: str, latest: int, previous: int, columns: list[str]
    ) -> Iterator[Pair]:
        """Per column: the rows before (reference) and the rows the newest version added."""
        from gristmill.execution.monitoring import quality

        new_files = self.ws.lake.parquet_files(table, latest)
        old_files = self.ws.lake.parquet_files(table, previous)
        if new_files is not None and old_files is not None:
            added, kept = quality.added_and_kept(
                [_path(f) for f in new_files], [_path(f) for f in old_files]
            )
            yield from quality.file_pairs(added, kept, columns)
            return
        for name in columns:  # no file lists: whole versions, a column at a time
            yield (
                name,
                self.ws.lake.read(table, previous, columns=[name])[name],
                self.ws.lake.read(table, latest, columns=[name])[name],
            )

    def _prediction_time(self, predictions: str) -> str:
        """A predictions table carries the timestamp of the feature view it scored."""
        m = self.catalog.latest(predictions)
        for table in m.inputs if m else {}:
            node = self.ws.graph.nodes.get(table)
            if isinstance(node, Table) and node.feature is not None:
                return node.feature.timestamp
        raise GristmillError(
            f"cannot tell the prediction time of {predictions!r}",
            hint="score a feature view: gristmill score MODEL --table VIEW --as-of ...",
        )

    # ---- alerts and triggers -----------------------------------------------------------

    def _notify(
        self, spec: Monitor, message: str, evaluation_id: str, outcome: Outcome
    ) -> dict[str, Any]:
        if not spec.webhook:
            return {}
        from gristmill.serving.webhook import Webhook

        hook = Webhook(spec.webhook, timeout_s=5.0, retries=2)
        hook.send(
            {
                "monitor": spec.name,
                "type": spec.type,
                "evaluation_id": evaluation_id,
                "message": message,
                "alerts": [
                    {
                        "subject": f.subject,
                        "statistic": f.statistic,
                        "value": f.value,
                        "threshold": f.threshold,
                    }
                    for f in outcome.alerts
                ],
            }
        )
        hook.close()
        return {
            "webhook": {
                "url": spec.webhook,
                "delivered": hook.sent == 1,
                "error": hook.last_error if hook.failed else "",
            }
        }

    def _queue_retrain(
        self, spec: Monitor, message: str, evaluation_id: str
    ) -> tuple[str, dict[str, Any]]:
        """The trigger: a run of kind ``retrain`` in the queue (it never runs inline)."""
        assert spec.on_alert is not None and spec.model is not None
        model = spec.model
        request = RunRequest(
            kind="retrain",
            selection=f"+{model}",
            full_refresh=False,
            params={
                "select": [f"+{model}"],
                "monitor": spec.name,
                "evaluation_id": evaluation_id,
                "message": message,
                "alias": spec.on_alert.alias,
                "before": self.catalog.aliases(model).get(spec.on_alert.alias),
            },
            requested_by=f"monitor:{spec.name}",
            priority=RETRAIN_PRIORITY,
        )
        try:
            queued = self.ws.coordinator.enqueue(request)
        except GristmillError as exc:
            return "failed", {"error": exc.message, "hint": exc.hint or ""}
        return "queued", {"run_id": queued.run_id}

    def settle(self, params: dict[str, Any], outcome: RunOutcome) -> dict[str, Any]:
        """After a retrain run's build: take the new version through the gates, record the
        decision on the alert that queued it; the decision as the run's summary adds it."""
        spec = self.spec(str(params["monitor"]))
        action, details = self._decide(spec, str(params["message"]), params.get("before"), outcome)
        details = {"run_id": outcome.result.run_id, **details}
        self.catalog.settle_alert(str(params["evaluation_id"]), spec.name, action, details)
        return {"retrain": {"action": action, **details}}

    def _decide(
        self, spec: Monitor, message: str, before: int | None, outcome: RunOutcome
    ) -> tuple[str, dict[str, Any]]:
        assert spec.on_alert is not None and spec.model is not None
        model, alias = spec.model, spec.on_alert.alias
        actor = f"monitor:{spec.name}"
        if not outcome.ok:
            failed_steps = [
                f"{r.name}: {r.error.get('message', r.error)}"
                for r in outcome.result.steps
                if r.error
            ]
            return "failed", {
                "error": f"the run that retrains {model} failed: " + "; ".join(failed_steps),
                "hint": "fix the failing step, then `gristmill monitor run` again",
            }
        latest = self.ws.models.version(model, "latest")
        self._event(model, "retrain", None, latest.version, before, actor, message)
        if latest.version == before:
            return "kept", {
                "version": latest.version,
                "reason": f"{alias} v{before} is already trained on the newest training set",
            }
        results = self.ws.models.gate_results(model, latest.version, alias=alias)
        failed_gates = [r for r in results if not r.passed]
        gates = [r.to_dict() for r in results]
        if failed_gates:
            reason = "; ".join(f"`{r.gate}` ({r.detail})" for r in failed_gates)
            self._event(model, "refused", alias, latest.version, before, actor, reason, gates)
            return "kept", {
                "version": latest.version,
                "champion": before,
                "reason": reason,
                "gates": gates,
            }
        if spec.on_alert.approval is Approval.MANUAL:
            self._event(model, "pending", alias, latest.version, before, actor, message, gates)
            return "pending", {
                "version": latest.version,
                "hint": f"gristmill promote {model} {latest.version} --alias {alias}",
                "gates": gates,
            }
        try:
            self.ws.models.move(model, latest.version, alias=alias, reason=message, actor=actor)
        except GateRefused as exc:  # the champion moved in between
            return "kept", {"version": latest.version, "reason": exc.message}
        return "promoted", {"version": latest.version, "previous": before, "gates": gates}

    def _event(
        self,
        model: str,
        action: str,
        alias: str | None,
        version: int,
        previous: int | None,
        actor: str,
        reason: str,
        gates: list[dict[str, Any]] | None = None,
    ) -> None:
        self.catalog.record_event(
            ModelEvent(
                model=model,
                action=action,
                alias=alias,
                version=version,
                previous_version=previous,
                actor=actor,
                reason=reason,
                at=utcnow(),
                gates=gates,
            )
        )

    # ---- reading -----------------------------------------------------------------------

    @requires(Action.READ)
    def status(self) -> list[MonitorStatus]:
        out = []
        for spec in self.ws.project.monitors.values():
            results = self.catalog.monitor_results(spec.name)
            alerts = self.catalog.monitor_alerts(spec.name)
            subject = spec.subject
            if not results:
                out.append(MonitorStatus(spec.name, spec.type, subject, "never", None, None))
                continue
            last_id = results[-1].evaluation_id
            last = [r for r in results if r.evaluation_id == last_id]
            head = _headline(last)
            state = _state(last)
            trend: list[float | None] = []
            if head is not None:
                series = [
                    r.value
                    for r in results
                    if r.subject == head["subject"] and r.statistic == head["statistic"]
                ]
                trend = series[-10:]
            out.append(
                MonitorStatus(
                    monitor=spec.name,
                    type=spec.type,
                    subject=subject,
                    state=state,
                    evaluated_at=last[0].evaluated_at,
                    headline=head,
                    trend=trend,
                    alerts=len(alerts),
                )
            )
        return out

    @requires(Action.READ)
    def results(
        self,
        name: str,
        *,
        since: datetime | None = None,
        subject: str | None = None,
        statistic: str | None = None,
    ) -> list[MonitorValue]:
        """A monitor's stored values, oldest first, optionally of one subject/statistic."""
        self.spec(name)
        return [
            shape_of(MonitorValue, r)
            for r in self.catalog.monitor_results(name, since=since)
            if (subject is None or r.subject == subject)
            and (statistic is None or r.statistic == statistic)
        ]

    @requires(Action.READ)
    def alerts(self, name: str | None = None) -> list[AlertInfo]:
        if name is not None:
            self.spec(name)
        return [shape_of(AlertInfo, a) for a in self.catalog.monitor_alerts(name)]

    @requires(Action.READ)
    def report(self, service: str) -> str:
        """A self-contained HTML page of the service's monitors (no network needed)."""
        from gristmill.workspace.reports import service_report

        return service_report(self.ws, service)

    def for_service(self, service: str) -> list[Monitor]:
        return [
            m
            for m in self.ws.project.monitors.values()
            if isinstance(m, ServiceMonitor) and m.service == service
        ]

    def _results(
        self, spec: Monitor, evaluation_id: str, now: datetime, outcome: Outcome, key: str | None
    ) -> list[MonitorResult]:
        base: ResultBase = {
            "evaluation_id": evaluation_id,
            "monitor": spec.name,
            "type": spec.type,
            "evaluated_at": now,
            "window_start": outcome.window_start,
            "window_end": outcome.window_end,
            "model_version": outcome.model_version,
        }
        if outcome.skipped or outcome.error:
            return [
                MonitorResult(
                    **base,
                    subject="evaluation",
                    statistic=outcome.state.value,
                    value=None,
                    threshold=None,
                    state=outcome.state.value,
                    details={
                        "reason": outcome.error or outcome.skipped,
                        "key": key,
                        "rows": outcome.rows,
                    },
                )
            ]
        return [
            MonitorResult(
                **base,
                subject=f.subject,
                statistic=f.statistic,
                value=_finite(f.value),
                threshold=f.threshold,
                state=f.state.value,
                details={
                    **f.details,
                    "key": key,
                    **({"engine": outcome.engine} if outcome.engine else {}),
                    "above_alerts": f.above_alerts,
                    **(
                        {"chart": outcome.charts[f.subject]}
                        if f.subject in outcome.charts and f.statistic == "psi"
                        else {}
                    ),
                },
            )
            for f in outcome.findings
        ]

    def _input_key(self, spec: Monitor) -> str | None:
        """What an evaluation depends on; None when it depends on time (the log)."""
        parts = []
        if isinstance(spec, QualityMonitor):
            latest = self.catalog.latest(spec.table)
            return f"{spec.table}@{latest.version if latest else None}"
        service = self.ws.project.services.get(spec.service)  # type: ignore[attr-defined]
        if service is not None:
            parts.append(f"champion@{self.catalog.aliases(service.model).get(service.alias)}")
        if isinstance(spec, DriftMonitor):
            if spec.current == LOG:
                return None
            latest = self.catalog.latest(spec.current)
            parts.append(f"{spec.current}@{latest.version if latest else None}")
        if isinstance(spec, PerformanceMonitor):
            if spec.predictions == LOG:
                return None
            latest = self.catalog.latest(spec.labels)
            parts.append(f"{spec.labels}@{latest.version if latest else None}")
            parts.append(f"{spec.predictions}@{self.ws.lake.latest_version(spec.predictions)}")
        return ";".join(parts)

    def _last_key(self, name: str) -> str | None:
        results = self.catalog.monitor_results(name)
        if not results:
            return None
        return (results[-1].details or {}).get("key")


def _headline(results: list[MonitorResult]) -> dict[str, Any] | None:
    judged = [r for r in results if r.threshold is not None and r.value is not None]
    if not judged:
        unjudged = next((r for r in results if r.subject == "evaluation"), None)
        if unjudged is not None:
            return {
                "subject": "evaluation",
                "statistic": unjudged.statistic,
                "reason": (unjudged.details or {}).get("reason"),
            }
        return None

    def closeness(r: MonitorResult) -> float:
        value, threshold = r.value, r.threshold
        assert value is not None and threshold is not None  # only judged rows are compared
        above = (r.details or {}).get("above_alerts", True)
        if threshold == 0:
            return float("inf") if value else 0.0
        return value / threshold if above else threshold / max(value, 1e-12)

    top = max(judged, key=closeness)
    return {
        "subject": top.subject,
        "statistic": top.statistic,
        "value": top.value,
        "threshold": top.threshold,
        "state": top.state,
    }


def _state(results: list[MonitorResult]) -> str:
    """An evaluation's state from its stored rows: one row when it did not run or judge."""
    unjudged = (State.SKIPPED.value, State.ERROR.value)
    if len(results) == 1 and results[0].state in unjudged:
        return results[0].state
    if any(r.state == State.ALERT.value for r in results):
        return State.ALERT.value
    return State.OK.value


def _finite(value: float | None) -> float | None:
    import math

    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def _utc(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


def _comparable(arrow_type: str) -> bool:
    lowered = arrow_type.lower()
    return any(t in lowered for t in ("int", "float", "double", "decimal", "string", "utf8"))
