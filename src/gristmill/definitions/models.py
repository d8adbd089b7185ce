"""Training sets and models: the declarative half of the model path.

``gm.training_set`` joins a labels table point-in-time to feature views; ``gm.model``
trains an estimator on a training set, evaluates it on a held-out split and registers a
model version that reaches an alias only through its gates. Like every definition they
are frozen values with the place they were written; creating one does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from gristmill.definitions.gates import Gate, parse_gate
from gristmill.definitions.objects import (
    Definition,
    StepKind,
    Table,
    _caller_location,
    check_name,
)
from gristmill.errors import DefinitionError, Location

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self is Task.CLASSIFICATION else REGRESSION_METRICS


# ---- training sets ----------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRef:
    """Columns of one feature view taken into a training set."""

    view: str
    columns: tuple[str, ...] | None = None
    """None: every column except the view's entity key and timestamp."""
    ttl: timedelta | None = None
    """Feature rows older than this at the label's time count as missing."""
    prefix: str = ""


def features(
    view: str,
    *,
    columns: Sequence[str] | None = None,
    ttl: str | timedelta | None = None,
    prefix: str = "",
) -> FeatureRef:
    """Take columns of feature view ``view`` into a training set.

    Args:
        view: a feature view (a table declared with ``entity=`` and ``timestamp=``).
        columns: the columns to take; all non-key columns if omitted.
        ttl: maximum age of a feature row at the label's time, e.g. ``"45d"``, ``"12h"``.
        prefix: prepended to the column names (to keep two views' columns apart).
    """
    location = _caller_location()
    return FeatureRef(
        view=view,
        columns=tuple(columns) if columns is not None else None,
        ttl=parse_duration(ttl, location, "ttl") if ttl is not None else None,
        prefix=prefix,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(
    value: str | timedelta, location: Location | None = None, what: str = ""
) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``45d``, ``2w`` or a timedelta; ``what`` names the setting
    in the error (``deadline: cannot read ...``)."""
    prefix = f"{what}: " if what else ""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise DefinitionError(
            f"{prefix}a duration is text or a timedelta, not {value!r} ({type(value).__name__})",
            location=location,
            hint="write a number and a unit in quotes: '30s', '15m', '12h', '45d', '2w'",
        )
    match = _DURATION.match(value)
    if not match:
        raise DefinitionError(
            f"{prefix}cannot read the duration {value!r}",
            location=location,
            hint="write a number and a unit: 30s, 15m, 12h, 45d, 2w",
        )
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise DefinitionError(
            f"{prefix}the duration {value!r} is longer than dates go (about 2,700,000 years)",
            location=location,
            hint="write a shorter duration, e.g. 3650d",
        ) from None


@dataclass(frozen=True)
class TrainingSet(Definition):
    """Labels joined to the latest feature rows at or before each label's time."""

    labels: str
    entity: tuple[str, ...]
    timestamp: str
    label: str
    features: tuple[FeatureRef, ...]

    @property
    def kind(self) -> StepKind:
        return StepKind.TRAINING_SET

    @property
    def dependencies(self) -> tuple[str, ...]:
        return (self.labels, *dict.fromkeys(f.view for f in self.features))

    def validate(self, nodes: Mapping[str, Definition]) -> None:
        for ref in self.features:
            view = nodes[ref.view]
            if not isinstance(view, Table) or view.feature is None:
                raise DefinitionError(
                    f"training set {self.name!r}: {ref.view!r} is not a feature view",
                    location=self.location,
                    hint="declare it with gm.feature_view(..., entity=..., timestamp=...)",
                )
            missing = [k for k in view.feature.entity if k not in self.entity]
            if missing:
                raise DefinitionError(
                    f"training set {self.name!r}: feature view {ref.view!r} is keyed by "
                    f"{', '.join(view.feature.entity)}, the labels by {', '.join(self.entity)}",
                    location=self.location,
                    hint="the labels need a column of the same name for every entity key",
                )


def training_set(
    name: str,
    *,
    labels: str,
    entity: str | Sequence[str],
    timestamp: str,
    label: str,
    features: Sequence[FeatureRef | str],
    description: str = "",
) -> TrainingSet:
    """Declare a point-in-time training set, itself a versioned table.

    Each row of ``labels`` (entity, timestamp, label) gets, from every feature view, the
    latest row of the same entity whose timestamp is at or before the label's timestamp.
    Label rows without such a row are kept, with null features, and counted.
    """
    location = _caller_location()
    check_name(name, location)
    refs = tuple(f if isinstance(f, FeatureRef) else FeatureRef(view=f) for f in features)
    if not refs:
        raise DefinitionError(f"training set {name!r} has no features", location=location)
    return TrainingSet(
        name=name,
        location=location,
        description=description,
        labels=labels,
        entity=(entity,) if isinstance(entity, str) else tuple(entity),
        timestamp=timestamp,
        label=label,
        features=refs,
    )


# ---- estimators and splits --------------------------------------------------------------


class EstimatorKind(StrEnum):
    LIGHTGBM = "lightgbm"
    SKLEARN = "sklearn"
    XGBOOST = "xgboost"


@dataclass(frozen=True)
class Estimator:
    """Which library trains the model, and with what parameters."""

    kind: EstimatorKind
    params: tuple[tuple[str, Any], ...] = ()
    obj: Any = field(default=None, compare=False)
    """For scikit-learn: the (unfitted) estimator or pipeline; cloned for every fit."""


def lightgbm(**params: Any) -> Estimator:
    """LightGBM (the default), with native categorical handling; ``params`` as LightGBM's."""
    return Estimator(EstimatorKind.LIGHTGBM, tuple(sorted(params.items())))


def xgboost(**params: Any) -> Estimator:
    """XGBoost (``pip install 'gristmill[xgboost]'``); ``params`` as XGBoost's."""
    return Estimator(EstimatorKind.XGBOOST, tuple(sorted(params.items())))


def sklearn(estimator: Any) -> Estimator:
    """A scikit-learn estimator or pipeline; it receives a pandas frame of the features."""
    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise DefinitionError(
            f"gm.sklearn() needs a scikit-learn estimator, not {type(estimator).__name__}",
            location=_caller_location(),
        )
    params = estimator.get_params(deep=True)
    described = tuple(sorted((k, repr(v)) for k, v in params.items()))
    return Estimator(
        EstimatorKind.SKLEARN, (("class", type(estimator).__qualname__), *described), estimator
    )


@dataclass(frozen=True)
class TimeSplit:
    """Train on the past, test on the future: the latest ``test_fraction`` of label times."""

    test_fraction: float = 0.25

    def describe(self) -> dict[str, Any]:
        return {"kind": "time", "test_fraction": self.test_fraction}


@dataclass(frozen=True)
class KFold:
    """K-fold cross-validation for the metrics; the registered model is fit on all rows."""

    folds: int = 5

    def describe(self) -> dict[str, Any]:
        return {"kind": "kfold", "folds": self.folds}


Split = TimeSplit | KFold


def time_split(test_fraction: float = 0.25) -> TimeSplit:
    if not 0 < test_fraction < 1:
        raise DefinitionError(
            f"test_fraction must be between 0 and 1, not {test_fraction}",
            location=_caller_location(),
        )
    return TimeSplit(test_fraction)


def kfold(folds: int = 5) -> KFold:
    if folds < 2:
        raise DefinitionError(
            f"kfold needs at least 2 folds, not {folds}", location=_caller_location()
        )
    return KFold(folds)


# ---- models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Model(Definition):
    """A spec that trains, evaluates and registers model versions."""

    training_set: str
    estimator: Estimator
    split: TimeSplit | KFold
    task: Task
    label: str | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] | None = None
    threshold: float = 0.5
    gates: tuple[Gate, ...] = ()
    bootstrap: int = 200
    seed: int = 0
    intended_use: str = ""
    limitations: str = ""

    @property
    def kind(self) -> StepKind:
        return StepKind.MODEL

    @property
    def dependencies(self) -> tuple[str, ...]:
        return (self.training_set,)

    def validate(self, nodes: Mapping[str, Definition]) -> None:
        if not isinstance(nodes[self.training_set], TrainingSet):
            raise DefinitionError(
                f"model {self.name!r}: {self.training_set!r} is not a training set",
                location=self.location,
                hint="declare one with gm.training_set(...)",
            )


def model(
    name: str,
    *,
    training_set: str,
    estimator: Estimator | None = None,
    split: TimeSplit | KFold | None = None,
    task: str = "classification",
    label: str | None = None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] | None = None,
    threshold: float = 0.5,
    gates: Sequence[str] = (),
    bootstrap: int = 200,
    seed: int = 0,
    intended_use: str = "",
    limitations: str = "",
    description: str = "",
) -> Model:
    """Declare a model trained on ``training_set``.

    Args:
        estimator: ``gm.lightgbm(...)`` (default), ``gm.sklearn(...)`` or ``gm.xgboost(...)``.
        split: ``gm.time_split(0.25)`` (default: train on the past, test on the future)
            or ``gm.kfold(5)``.
        task: ``classification`` (binary) or ``regression``.
        label: the label column; the training set's label by default.
        features: the feature columns; every feature column of the training set by default.
        exclude: feature columns to leave out.
        categorical: columns treated as categories; by default every text column.
        threshold: the decision threshold for precision and recall.
        gates: conditions a version must meet to get an alias, e.g.
            ``"roc_auc >= 0.70"``, ``"roc_auc >= champion.roc_auc - 0.005"``.
        bootstrap: resamples for the 95% confidence intervals of the metrics.
        seed: seeds the estimator, the split of k-fold and the bootstrap.
        intended_use: for the model card.
        limitations: for the model card.
    """
    location = _caller_location()
    check_name(name, location)
    try:
        kind = Task(task)
    except ValueError:
        raise DefinitionError(
            f"model {name!r}: unknown task {task!r}",
            location=location,
            hint=f"use one of {', '.join(t.value for t in Task)}",
        ) from None
    if not 0 < threshold < 1:
        raise DefinitionError(
            f"model {name!r}: threshold must be between 0 and 1", location=location
        )
    return Model(
        name=name,
        location=location,
        description=description,
        training_set=training_set,
        estimator=estimator or lightgbm(),
        split=split or TimeSplit(),
        task=kind,
        label=label,
        features=tuple(features) if features is not None else None,
        exclude=tuple(exclude),
        categorical=tuple(categorical) if categorical is not None else None,
        threshold=threshold,
        gates=tuple(parse_gate(g, kind.metrics, location) for g in gates),
        bootstrap=bootstrap,
        seed=seed,
        intended_use=intended_use,
        limitations=limitations,
    )
