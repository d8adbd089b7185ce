"""Training one model version: read the training set, split, fit, evaluate, store.

Rows are read in a fixed order (label time, then entity) and every random choice is
seeded, so the same training-set version and spec give the same metrics and the same
model file, byte for byte (hence the same digest).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.definitions.models import KFold, Model, Task, TimeSplit
from gristmill.errors import TrainingFailed
from gristmill.execution.engines import Session
from gristmill.execution.ml import metrics
from gristmill.execution.ml.bundle import Manifest
from gristmill.execution.ml.estimators import Backend, backend
from gristmill.execution.ml.features import infer_features
from gristmill.execution.sql import q
from gristmill.storage.artifacts import ArtifactStore
from gristmill.storage.catalog import Materialization, ModelVersion
from gristmill.storage.catalog.records import utcnow

SHARE_TOLERANCE = 0.10
"""A time split whose test share is further than this from the requested one warns."""
PACKAGES = ("gristmill", "lightgbm", "scikit-learn", "numpy", "pyarrow", "duckdb", "skops")


@dataclass(frozen=True)
class Trained:
    materialization: Materialization
    model_version: ModelVersion


@dataclass(frozen=True)
class _Data:
    rows: pa.Table
    y: np.ndarray
    times: np.ndarray
    features: list[str]
    label: str


def train(
    session: Session,
    artifacts: ArtifactStore,
    spec: Model,
    training_set: Materialization,
    template: Materialization,
    version: int,
) -> Trained:
    clock = time.perf_counter()
    data = _read(session, spec, training_set)
    if isinstance(spec.split, KFold):
        evaluation = _kfold(spec, data, spec.split)
    else:
        evaluation = _holdout(spec, data, spec.split)
    engine, model, details = evaluation
    file = engine.dumps(model)
    digest = artifacts.put(file)
    manifest = Manifest(
        estimator=spec.estimator.kind.value,
        format=engine.format,
        task=spec.task,
        label=data.label,
        threshold=spec.threshold,
        features=engine.features,
        artifact=digest,
    )
    manifest_digest = artifacts.put(manifest.to_bytes())
    details.update(
        {
            "params": {k: _plain(v) for k, v in engine.params(spec.estimator).items()},
            "features": [f.to_dict() for f in engine.features],
            "label": data.label,
            "threshold": spec.threshold,
            "seed": spec.seed,
            "importance": engine.importance(model),
            "environment": _environment(),
            "artifact": {"digest": digest, "format": engine.format, "bytes": len(file)},
            "training_set_stats": training_set.stats,
            "intended_use": spec.intended_use,
            "limitations": spec.limitations,
        }
    )
    duration = time.perf_counter() - clock
    model_version = ModelVersion(
        model=spec.name,
        version=version,
        run_id=template.run_id,
        created_at=utcnow(),
        task=spec.task.value,
        estimator=spec.estimator.kind.value,
        training_set=spec.training_set,
        training_set_version=training_set.version,
        code_hash=template.code_hash,
        fingerprint=template.fingerprint,
        artifact_digest=digest,
        manifest_digest=manifest_digest,
        duration_s=round(duration, 3),
        metrics=details.pop("metrics"),
        details=details,
    )
    materialization = replace(
        template,
        version=version,
        rows=data.rows.num_rows,
        rows_added=data.rows.num_rows,
        schema=[f.to_dict() for f in engine.features],
        stats=_stats(model_version),
        finished_at=utcnow(),
    )
    return Trained(materialization, model_version)


def _stats(model_version: ModelVersion) -> dict[str, Any]:
    stats: dict[str, Any] = {"metrics": {k: v["value"] for k, v in model_version.metrics.items()}}
    warning = model_version.details.get("split", {}).get("warning")
    return {**stats, "warnings": [warning]} if warning else stats


def _read(session: Session, spec: Model, training_set: Materialization) -> _Data:
    stats = training_set.stats
    label = spec.label or stats.get("label")
    if not label:
        raise TrainingFailed(f"{spec.name}: no label column", location=spec.location)
    columns = [c["name"] for c in training_set.schema]
    features = list(spec.features) if spec.features is not None else list(stats.get("features", []))
    features = [f for f in features if f not in spec.exclude and f != label]
    missing = [c for c in [label, *features] if c not in columns]
    if missing:
        raise TrainingFailed(
            f"{spec.name}: training set {spec.training_set!r} has no column(s) "
            f"{', '.join(missing)}",
            location=spec.location,
            hint=f"its columns: {', '.join(columns)}",
        )
    if not features:
        raise TrainingFailed(f"{spec.name}: no feature columns", location=spec.location)
    time_column = stats.get("timestamp")
    keys = [time_column, *stats.get("entity", [])] if time_column else list(columns)
    order = ", ".join(q(k) for k in keys)
    wanted = ", ".join(q(c) for c in dict.fromkeys([*features, label, *keys]))
    rows = session.reader(
        f"SELECT {wanted} FROM {q(spec.training_set)} WHERE {q(label)} IS NOT NULL ORDER BY {order}"
    ).read_all()
    if rows.num_rows < 10:
        raise TrainingFailed(
            f"{spec.name}: the training set has {rows.num_rows} labelled rows; too few to train",
            location=spec.location,
        )
    y = _labels(spec, rows[label])
    times = (
        rows[time_column].to_numpy(zero_copy_only=False)
        if time_column
        else np.arange(rows.num_rows)
    )
    return _Data(rows, y, times, features, label)


def _labels(spec: Model, column: pa.ChunkedArray) -> np.ndarray:
    y: np.ndarray = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if spec.task is Task.CLASSIFICATION:
        values = set(np.unique(y).tolist())
        if not values <= {0.0, 1.0}:
            shown = ", ".join(str(v) for v in sorted(values)[:5])
            raise TrainingFailed(
                f"{spec.name}: a classification label must be 0/1, found {shown}",
                location=spec.location,
                hint="map the label to 0/1 in the labels table, or use task='regression'",
            )
        return y.astype(np.int64)
    return y


def _holdout(spec: Model, data: _Data, split: TimeSplit) -> tuple[Backend, Any, dict[str, Any]]:
    cutoff = time_cutoff(data.times, split.test_fraction)
    if cutoff is None:
        raise TrainingFailed(
            f"{spec.name}: a time split needs label times before and after the cutoff; "
            f"all {len(data.times)} rows have the same time",
            location=spec.location,
            hint="use split=gm.kfold(5), or add labels from more dates",
        )
    test = data.times >= cutoff
    train_rows = data.rows.filter(pa.array(~test))
    test_rows = data.rows.filter(pa.array(test))
    y_train, y_test = data.y[~test], data.y[test]
    _require_classes(spec, y_train, "training")
    engine = backend(
        spec.estimator.kind, spec.task, infer_features(train_rows, data.features, spec.categorical)
    )
    model = engine.fit(spec.estimator, train_rows, y_train, spec.seed)
    scores = engine.predict(model, test_rows)
    _require_classes(spec, y_test, "test")
    details = _evaluation(spec, y_train, y_test, scores)
    details["split"] = _time_split_details(split, data.times, test, cutoff)
    return engine, model, details


def time_cutoff(times: np.ndarray, fraction: float) -> Any | None:
    """The label time from which rows are test rows: of the cutoffs that split no time
    (rows tied at a time go to the same side), the one whose test share is nearest to
    ``fraction`` (on a tie, the larger test set). None when all rows share one time."""
    values, counts = np.unique(times, return_counts=True)
    if len(values) < 2:
        return None
    at_or_after = np.cumsum(counts[::-1])[::-1][1:]  # test rows for cutoffs values[1:]
    distance = np.abs(at_or_after - fraction * len(times))
    return values[1 + int(np.argmin(distance))]


def _time_split_details(
    split: TimeSplit, times: np.ndarray, test: np.ndarray, cutoff: Any
) -> dict[str, Any]:
    test_rows = int(test.sum())
    share = test_rows / len(times)
    details = {
        **split.describe(),
        "cutoff": _when(cutoff),
        "train_rows": len(times) - test_rows,
        "test_rows": test_rows,
        "train_share": (len(times) - test_rows) / len(times),
        "test_share": share,
        "train_until": _when(times.min()) + " .. " + _when(times[~test].max()),
        "test_from": _when(cutoff) + " .. " + _when(times.max()),
    }
    if abs(share - split.test_fraction) > SHARE_TOLERANCE:
        details["warning"] = (
            f"the test set holds {share:.1%} of the rows, not the {split.test_fraction:.0%} "
            f"asked for: the labels fall on {len(np.unique(times))} distinct times and rows "
            "of one time are never split (add label dates, or use gm.kfold())"
        )
    return details


def _kfold(spec: Model, data: _Data, split: KFold) -> tuple[Backend, Any, dict[str, Any]]:
    from sklearn.model_selection import KFold as Folds
    from sklearn.model_selection import StratifiedKFold

    _require_classes(spec, data.y, "training")
    splitter = (
        StratifiedKFold(split.folds, shuffle=True, random_state=spec.seed)
        if spec.task is Task.CLASSIFICATION
        else Folds(split.folds, shuffle=True, random_state=spec.seed)
    )
    scores = np.empty(len(data.y))
    for train_idx, test_idx in splitter.split(np.zeros(len(data.y)), data.y):
        rows = data.rows.take(pa.array(train_idx))
        engine = backend(
            spec.estimator.kind, spec.task, infer_features(rows, data.features, spec.categorical)
        )
        fold_model = engine.fit(spec.estimator, rows, data.y[train_idx], spec.seed)
        scores[test_idx] = engine.predict(fold_model, data.rows.take(pa.array(test_idx)))
    engine = backend(
        spec.estimator.kind, spec.task, infer_features(data.rows, data.features, spec.categorical)
    )
    model = engine.fit(spec.estimator, data.rows, data.y, spec.seed)
    details = _evaluation(spec, data.y, data.y, scores)
    details["split"] = {**split.describe(), "train_rows": len(data.y), "test_rows": len(data.y)}
    return engine, model, details


def _evaluation(
    spec: Model, y_train: np.ndarray, y_test: np.ndarray, scores: np.ndarray
) -> dict[str, Any]:
    return {
        "metrics": metrics.evaluate(
            spec.task,
            y_test,
            scores,
            threshold=spec.threshold,
            resamples=spec.bootstrap,
            seed=spec.seed,
        ),
        "baseline": metrics.baseline(spec.task, y_train, y_test, spec.threshold),
        "curves": metrics.curves(spec.task, y_test, scores, spec.threshold),
        "bootstrap": spec.bootstrap,
    }


def _require_classes(spec: Model, y: np.ndarray, part: str) -> None:
    if spec.task is Task.CLASSIFICATION and len(np.unique(y)) < 2:
        raise TrainingFailed(
            f"{spec.name}: the {part} rows hold one class only; a classifier needs both",
            location=spec.location,
            hint="check the labels, or change the split",
        )


def _environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return env


def _when(value: Any) -> str:
    """A label time as text: ``2026-05-01 00:00:00`` rather than numpy's long form."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s")).replace("T", " ")
    return str(value)


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
