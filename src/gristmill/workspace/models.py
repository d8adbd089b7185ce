"""The model registry as the CLI, API and UI see it: versions, aliases, gates, scoring.

Training itself is a step of the graph (``Workspace.run``); this module reads what it
registered, moves aliases through the gates with an audit trail, and batch-scores.
"""

from __future__ import annotations

import builtins
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gristmill.access import Action, requires
from gristmill.definitions.gates import GateResult
from gristmill.definitions.models import Model
from gristmill.definitions.objects import Table, check_name
from gristmill.errors import (
    DefinitionError,
    GateRefused,
    InvalidInputError,
    Location,
    ScoringError,
    UnknownModelError,
)
from gristmill.execution.ml.bundle import LoadedModel, load
from gristmill.storage.catalog import Materialization, ModelEvent, ModelVersion
from gristmill.storage.catalog.records import utcnow
from gristmill.storage.catalog.runs import RunRequest
from gristmill.workspace.shapes import (
    Comparison,
    ModelEventInfo,
    ModelSummary,
    ModelVersionInfo,
    Promotion,
    ScoreResult,
    shape_of,
)

if TYPE_CHECKING:
    from gristmill.workspace.core import RunOutcome, Workspace

LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae"}


class Models:
    """Registry operations over one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.catalog = ws.catalog

    # ---- training --------------------------------------------------------------------

    @requires(Action.RUN)
    def train(self, name: str, **run_options: Any) -> RunOutcome:
        """Build the model's inputs if stale, then train and register a new version."""
        self.spec(name)
        return self.ws.run([f"+{name}"], force=[name], **run_options)

    # ---- reading ---------------------------------------------------------------------

    def spec(self, name: str) -> Model:
        node = self.ws.graph.nodes.get(name)
        if not isinstance(node, Model):
            defined = sorted(n for n, d in self.ws.graph.nodes.items() if isinstance(d, Model))
            raise UnknownModelError(
                f"no model named {name!r} in this project",
                hint=f"models: {', '.join(defined)}" if defined else "declare one with gm.model()",
            )
        return node

    @requires(Action.READ)
    def list(self) -> list[ModelSummary]:
        names = {n for n, d in self.ws.graph.nodes.items() if isinstance(d, Model)}
        return [self._summary(name) for name in sorted(names | set(self.catalog.model_names()))]

    @requires(Action.READ)
    def summary(self, name: str) -> ModelSummary:
        """One model as ``list`` shows it: defined here, or with versions in the registry."""
        if name not in self.catalog.model_names():
            self.spec(name)
        return self._summary(name)

    def _summary(self, name: str) -> ModelSummary:
        node = self.ws.graph.nodes.get(name)
        spec = node if isinstance(node, Model) else None
        versions = self.catalog.model_versions(name)
        latest = versions[-1] if versions else None
        return ModelSummary(
            name=name,
            training_set=spec.training_set if spec else latest.training_set,  # type: ignore[union-attr]
            estimator=spec.estimator.kind.value if spec else latest.estimator,  # type: ignore[union-attr]
            versions=len(versions),
            latest=latest.version if latest else None,
            aliases=self.catalog.aliases(name),
            headline={k: v["value"] for k, v in latest.metrics.items()} if latest else {},
            defined=spec is not None,
        )

    def version(self, name: str, ref: str | int | None = None) -> ModelVersion:
        """A version by number, by alias (``champion``) or ``latest`` (the default)."""
        versions = self.catalog.model_versions(name)
        if not versions:
            self.spec(name)
            raise UnknownModelError(
                f"model {name!r} has no versions yet", hint=f"run `gristmill train {name}`"
            )
        if ref is None or ref == "latest":
            return versions[-1]
        number = _as_int(ref)
        if number is None:
            aliases = self.catalog.aliases(name)
            if str(ref) not in aliases:
                raise UnknownModelError(
                    f"model {name!r} has no alias {ref!r}",
                    hint=f"aliases: {', '.join(f'{a} -> v{v}' for a, v in aliases.items())}"
                    if aliases
                    else f"promote a version first: `gristmill promote {name} N --alias {ref}`",
                )
            number = aliases[str(ref)]
        found = next((v for v in versions if v.version == number), None)
        if found is None:
            raise UnknownModelError(
                f"model {name!r} has no version {number}",
                hint=f"versions: 1..{versions[-1].version}",
            )
        return found

    @requires(Action.READ)
    def show(self, name: str, ref: str | int | None = None) -> ModelVersionInfo:
        v = self.version(name, ref)
        training_set = self.catalog.materialization(v.training_set, v.training_set_version)
        return _info(v, self.catalog.aliases(name), training_set)

    @requires(Action.READ)
    def versions(self, name: str) -> builtins.list[ModelVersionInfo]:
        """Every version of a model, oldest first, as ``show`` gives each (the catalog read
        once: a model with hundreds of versions lists in milliseconds)."""
        found = self.catalog.model_versions(name)
        if not found:
            self.spec(name)  # an unknown model is an error; a known one may have none yet
        aliases = self.catalog.aliases(name)
        sets: dict[tuple[str, int], Materialization | None] = {}
        for v in found:
            key = (v.training_set, v.training_set_version)
            if key not in sets:
                sets[key] = self.catalog.materialization(*key)
        return [_info(v, aliases, sets[(v.training_set, v.training_set_version)]) for v in found]

    @requires(Action.READ)
    def card(self, name: str, ref: str | int | None = None, *, format: str = "md") -> str:  # noqa: A002
        """The version's model card as Markdown (``md``) or self-contained ``html``."""
        from gristmill.workspace import cards

        if format not in ("md", "html"):
            raise UnknownModelError(f"unknown card format {format!r}", hint="use md or html")
        info = self.show(name, ref)
        return cards.markdown(info) if format == "md" else cards.to_html(info)

    @requires(Action.READ)
    def events(self, name: str) -> builtins.list[ModelEventInfo]:
        self.version(name)
        return [shape_of(ModelEventInfo, e) for e in self.catalog.model_events(name)]

    @requires(Action.READ)
    def compare(self, name: str, a: str | int, b: str | int) -> Comparison:
        va, vb = self.version(name, a), self.version(name, b)
        rows = []
        for metric in dict.fromkeys([*va.metrics, *vb.metrics]):
            ma, mb = va.metrics.get(metric, {}), vb.metrics.get(metric, {})
            x, y = ma.get("value"), mb.get("value")
            delta = y - x if x is not None and y is not None else None
            better = None
            if delta is not None and delta != 0:
                better = (delta < 0) if metric in LOWER_IS_BETTER else (delta > 0)
            rows.append(
                {
                    "metric": metric,
                    "a": x,
                    "b": y,
                    "delta": delta,
                    "b_better": better,
                    "intervals_overlap": _overlap(ma, mb),
                }
            )
        pa_, pb = va.details.get("params", {}), vb.details.get("params", {})
        params = [
            {"param": k, "a": pa_.get(k), "b": pb.get(k)}
            for k in sorted(set(pa_) | set(pb))
            if pa_.get(k) != pb.get(k)
        ]
        fa = {f["name"] for f in va.details.get("features", [])}
        fb = {f["name"] for f in vb.details.get("features", [])}
        ia, ib = va.details.get("importance", {}), vb.details.get("importance", {})
        return Comparison(
            model=name,
            a=va.version,
            b=vb.version,
            metrics=rows,
            params=params,
            features_added=sorted(fb - fa),
            features_removed=sorted(fa - fb),
            training_sets={"a": va.training_set_version, "b": vb.training_set_version},
            importance=[
                {"feature": f, "a": ia.get(f), "b": ib.get(f)} for f in sorted(set(ia) | set(ib))
            ],
        )

    def load(self, name: str, ref: str | int | None = None) -> LoadedModel:
        """A version's model, loaded after both its files' digests are verified."""
        v = self.version(name, ref)
        return load(self.ws.artifacts, name, v.version, v.manifest_digest)

    def worker_files(self, loaded: LoadedModel) -> tuple[bytes, bytes]:
        """A loaded model's two files (manifest, model) as bytes, for an engine's workers
        to load it from (``bundle.loads`` checks the model's digest again there)."""
        from gristmill.execution.ml.bundle import Manifest

        manifest = loaded.manifest.to_bytes()
        return manifest, self.ws.artifacts.get(Manifest.from_bytes(manifest).artifact)

    # ---- aliases ---------------------------------------------------------------------

    @requires(Action.PROMOTE)
    def promote(
        self,
        name: str,
        ref: str | int,
        *,
        alias: str = "champion",
        reason: str = "",
        force: bool = False,
    ) -> Promotion:
        """Point ``alias`` at a version if the spec's gates pass; ``force`` overrides them,
        for a principal that may ``override``. The audit trail records the principal."""
        return self.move(name, ref, alias=alias, reason=reason, force=force)

    def move(
        self,
        name: str,
        ref: str | int,
        *,
        alias: str,
        reason: str,
        force: bool = False,
        actor: str | None = None,
    ) -> Promotion:
        """``promote`` without the ``promote`` check, for the project's own automation (a
        monitor's gated retraining, ``actor="monitor:<name>"``); gates still decide."""
        _check_alias(alias)
        candidate = self.version(name, ref)
        previous = self.catalog.aliases(name).get(alias)
        rollback = previous is not None and candidate.version < previous
        results = self.gate_results(name, candidate.version, alias=alias)
        failed = [r for r in results if not r.passed]
        if failed and not force:
            raise GateRefused(
                f"{name} v{candidate.version} did not pass "
                + "; ".join(f"`{r.gate}` ({r.detail})" for r in failed),
                hint="improve the model, or override with --force --reason '...' "
                "(recorded in the audit trail; needs the admin role)",
            )
        if failed:
            self.ws.authorize(Action.OVERRIDE, f"{name} v{candidate.version} (gates failed)")
        if force and failed and not reason.strip():
            raise GateRefused(
                "--force needs --reason: an override is recorded with why",
                hint=f"gristmill promote {name} {candidate.version} --alias {alias} --force "
                '--reason "..."',
            )
        # gates can be overridden, integrity cannot: a servable alias needs an intact file
        self.load(name, candidate.version)
        action = "override" if failed else ("rollback" if rollback else "promote")
        who = actor or self.ws.principal.name
        return self._move(name, alias, candidate.version, previous, action, reason, who, results)

    @requires(Action.READ)
    def gate_results(
        self, name: str, ref: str | int, *, alias: str = "champion"
    ) -> builtins.list[GateResult]:
        """The spec's gates on a version, against the versions the aliases point at (none
        when it would roll ``alias`` back to an earlier version)."""
        candidate = self.version(name, ref)
        aliases = self.catalog.aliases(name)
        previous = aliases.get(alias)
        if previous is not None and candidate.version < previous:
            return [g.check(candidate.metrics, {}) for g in self.spec(name).gates]
        others = {
            a: self.version(name, v).metrics for a, v in aliases.items() if v != candidate.version
        }
        return [g.check(candidate.metrics, others) for g in self.spec(name).gates]

    @requires(Action.READ)
    def pending(self, name: str) -> builtins.list[ModelEventInfo]:
        """Promotions a monitor left for manual approval that no later move completed."""
        events = self.catalog.model_events(name)
        out = []
        for i, event in enumerate(events):
            if event.action != "pending":
                continue
            later = events[i + 1 :]
            done = any(
                e.alias == event.alias
                and e.action in ("promote", "override", "rollback")
                and e.version >= event.version
                for e in later
            )
            if not done:
                out.append(shape_of(ModelEventInfo, event))
        return out

    @requires(Action.PROMOTE)
    def rollback(self, name: str, *, alias: str = "champion", reason: str = "") -> Promotion:
        """Point ``alias`` back at the version it held before its last move."""
        current = self.catalog.aliases(name).get(alias)
        moves = [e for e in self.catalog.model_events(name) if e.alias == alias]
        before = next((e.previous_version for e in reversed(moves) if e.version == current), None)
        if current is None or before is None:
            raise UnknownModelError(
                f"alias {alias!r} of {name!r} has no earlier version to roll back to",
                hint=f"`gristmill models history {name}` shows the alias's moves",
            )
        actor = self.ws.principal.name
        return self._move(name, alias, before, current, "rollback", reason, actor, [])

    def _move(
        self,
        name: str,
        alias: str,
        version: int,
        previous: int | None,
        action: str,
        reason: str,
        actor: str,
        results: builtins.list[GateResult],
    ) -> Promotion:
        event = ModelEvent(
            model=name,
            action=action,
            alias=alias,
            version=version,
            previous_version=previous,
            actor=actor,
            reason=reason,
            at=utcnow(),
            gates=[r.to_dict() for r in results],
        )
        self.catalog.move_alias(event)
        return Promotion(
            model=name,
            alias=alias,
            version=version,
            previous_version=previous,
            action=action,
            gates=event.gates or [],
            actor=event.actor,
            reason=reason,
            at=event.at,
        )

    # ---- batch scoring ---------------------------------------------------------------

    def _scores_table(self, into: str) -> str:
        """A name scores may be written to: a plain name that no step builds."""
        try:
            check_name(into, Location(self.ws.root / "--into"))
        except DefinitionError as exc:
            raise ScoringError(
                f"--into {into!r} is not a table name scores may go to: {exc.message}",
                hint=f"{exc.hint}; e.g. the default <model>__predictions",
            ) from None
        if into in self.ws.graph.nodes:
            raise ScoringError(
                f"--into {into!r} is a table the project builds",
                hint="score into a table of its own, e.g. the default <model>__predictions",
            )
        return into

    @requires(Action.RUN)
    def score(
        self,
        name: str,
        *,
        table: str,
        version: int | None = None,
        as_of: datetime | None = None,
        model: str | int | None = None,
        into: str | None = None,
        batch_rows: int = 65_536,
    ) -> ScoreResult:
        """Score a table version with a model version (default: ``champion``)."""
        from gristmill.execution.ml.scoring import ScoreRequest

        clock = time.perf_counter()
        loaded = self.load(name, model if model is not None else self._default_ref(name))
        source = self.ws.materialization(table, version)
        node = self.ws.graph.get(table)
        feature = node.feature if isinstance(node, Table) else None
        columns = [c["name"] for c in source.schema]
        missing = [f for f in loaded.feature_names if f not in columns]
        if missing:
            raise ScoringError(
                f"table {table!r} v{source.version} lacks feature(s) {', '.join(missing)} "
                f"that {name} v{loaded.version} needs",
                hint="score a table with the training set's feature columns (its feature view)",
            )
        if as_of is not None and feature is None:
            raise ScoringError(
                f"--as-of needs a feature view; {table!r} has no entity and timestamp",
                hint="drop --as-of to score every row, or score a feature view",
            )
        # a feature view keeps its keys; any other table keeps its non-feature columns
        keys = (
            (*feature.entity, feature.timestamp)
            if feature
            else tuple(c for c in columns if c not in loaded.feature_names)
        )
        request = ScoreRequest(
            table=table,
            version=source.version,
            into=self._scores_table(into or f"{name}__predictions"),
            keys=keys,
            timestamp=feature.timestamp if feature else None,
            as_of=as_of,
            batch_rows=batch_rows,
        )
        choice = self.ws.engine_chooser.for_data({table: source.version})
        result = self._write_scores(name, loaded, request, choice.engine)
        stats = result.stats
        return ScoreResult(
            model=name,
            model_version=loaded.version,
            table=table,
            table_version=source.version,
            as_of=as_of,
            predictions_table=request.into,
            predictions_version=result.version,
            rows=result.rows,
            duration_s=round(time.perf_counter() - clock, 3),
            score_mean=stats.get("score_mean"),
            predicted_positive=stats.get("predicted_positive"),
            engine=choice.engine,
            engine_reason=choice.reason,
        )

    def _default_ref(self, name: str) -> str | int:
        return "champion" if "champion" in self.catalog.aliases(name) else "latest"

    def _write_scores(
        self, name: str, loaded: LoadedModel, request: Any, engine: str
    ) -> Materialization:
        from gristmill.execution.ml.scoring import score, score_by_workers
        from gristmill.execution.steps import expose

        run = RunRequest(
            kind="score",
            selection=f"score {name} {request.table}",
            params={"model": name, "table": request.table, "into": request.into},
            requested_by=self.ws.principal.name,
        )
        with self.ws.coordinator.start(run) as active:
            run_id = active.run_id
            now = utcnow()
            template = Materialization(
                table_name=request.into,
                version=-1,
                run_id=run_id,
                kind="predictions",
                mode="overwrite",
                fingerprint=loaded.manifest.artifact,
                code_hash=loaded.manifest.artifact,
                inputs={request.table: request.version},
                rows=0,
                rows_added=0,
                quarantined=0,
                schema=[],
                started_at=now,
                finished_at=now,
                stats={
                    "model": name,
                    "model_version": loaded.version,
                    "as_of": _iso(request.as_of),
                },
            )
            with self.ws.engine_session(engine) as (session, scan):
                expose(session, self.ws.lake, request.table, request.version, scan=scan)
                if session.WRITES_FILES:  # Spark: its workers score, the lake commits
                    written = score_by_workers(
                        session, self.ws.lake, loaded, self.worker_files(loaded), request, template
                    )
                else:
                    written = score(session, self.ws.lake, loaded, request, template)
                expose(
                    session,
                    self.ws.lake,
                    written.table_name,
                    written.version,
                    alias="__gm_scored",
                    scan=scan,
                )
                written = _with_summary(session, written)
            written = _finished(written)
            self.catalog.record_materialization(written)
            active.finish("success", {"status": "success", "scored": name})
        return written


def _with_summary(session: Any, m: Materialization) -> Materialization:
    from dataclasses import replace

    has_predicted = any(c["name"] == "predicted" for c in m.schema)
    positive = 'sum("predicted")' if has_predicted else "NULL"
    ((mean, pos),) = session.rows(f'SELECT avg("score"), {positive} FROM "__gm_scored"')
    stats = {
        **m.stats,
        "score_mean": float(mean) if mean is not None else None,
        "predicted_positive": int(pos) if pos is not None else None,
    }
    return replace(m, stats=stats)


def _finished(m: Materialization) -> Materialization:
    from dataclasses import replace

    return replace(m, finished_at=utcnow())


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    if None in (a.get("low"), a.get("high"), b.get("low"), b.get("high")):
        return None
    return bool(a["low"] <= b["high"] and b["low"] <= a["high"])


def _as_int(ref: str | int) -> int | None:
    if isinstance(ref, int):
        return ref
    text = ref[1:] if ref.lower().startswith("v") else ref
    return int(text) if text.isdigit() else None


def _check_alias(alias: str) -> None:
    import re

    if not re.match(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$", alias) or alias == "latest":
        raise InvalidInputError(
            f"invalid alias {alias!r}",
            hint="an alias is a word like champion, challenger or staging (not 'latest')",
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _info(
    v: ModelVersion, aliases: dict[str, int], training_set: Materialization | None
) -> ModelVersionInfo:
    d = v.details
    return ModelVersionInfo(
        model=v.model,
        version=v.version,
        aliases=[a for a, n in aliases.items() if n == v.version],
        created_at=v.created_at,
        run_id=v.run_id,
        task=v.task,
        estimator=v.estimator,
        metrics=v.metrics,
        baseline=d.get("baseline", {}),
        params=d.get("params", {}),
        features=d.get("features", []),
        importance=d.get("importance", {}),
        split=d.get("split", {}),
        curves=d.get("curves", {}),
        lineage={
            "training_set": v.training_set,
            "training_set_version": v.training_set_version,
            "inputs": training_set.inputs if training_set else {},
            "label_rows": d.get("training_set_stats", {}).get("labels"),
            "label_rows_without_features": d.get("training_set_stats", {}).get("missing"),
            "code_hash": v.code_hash,
            "fingerprint": v.fingerprint,
        },
        artifact={**d.get("artifact", {}), "manifest": v.manifest_digest},
        environment=d.get("environment", {}),
        duration_s=v.duration_s,
        intended_use=d.get("intended_use", ""),
        limitations=d.get("limitations", ""),
    )
