"""Monitors: drift, delayed-label performance and data quality, with alerts and triggers.

A monitor compares what a model sees now with what it was trained on (drift), what it
predicted with what happened (performance), or a table's new version with its history
(quality). Each evaluation stores one value per statistic with its threshold and state;
crossing a threshold records an alert, may POST a webhook and may retrain the model
(``on_alert=gm.retrain()``), which promotes the new version only if its gates pass.
Monitors live beside the graph, as services do: nothing is built for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from gristmill.definitions.models import Model, TrainingSet, parse_duration
from gristmill.definitions.objects import Definition, Table, _caller_location, check_name
from gristmill.definitions.services import Service
from gristmill.errors import DefinitionError, Location

LOG = "log"
"""``current=``/``predictions=``: the service's prediction log."""

DRIFT_STATISTICS = {
    # name -> True when a value above the threshold alerts, False when below (p-values)
    "psi": True,
    "jensenshannon": True,
    "ks": True,
    "ks_p": False,
    "wasserstein_norm": True,
    "chi2_p": False,
    "null_rate": True,
    "new_categories": True,
}
DEFAULT_DRIFT = {"psi": 0.2, "null_rate": 0.1, "new_categories": 0.01}
PERFORMANCE_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
    "rmse",
    "mae",
    "r2",
)
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})


class Approval(StrEnum):
    AUTO = "auto"
    """A retrained version that passes its gates becomes the champion."""
    MANUAL = "manual"
    """It waits as a pending promotion until `gristmill promote` completes it."""


@dataclass(frozen=True)
class Retrain:
    approval: Approval = Approval.AUTO
    alias: str = "champion"


@dataclass(frozen=True)
class Monitor(Definition):
    window: timedelta
    min_rows: int
    webhook: str | None
    on_alert: Retrain | None

    @property
    def type(self) -> str:
        raise NotImplementedError

    @property
    def model(self) -> str | None:
        """The model a retrain trigger retrains (None: the monitor cannot retrain)."""
        return None

    @property
    def subject(self) -> str:
        """What the monitor watches: a service or a table."""
        raise NotImplementedError

    def validate_refs(
        self, nodes: Mapping[str, Definition], services: Mapping[str, Service]
    ) -> None:
        if self.on_alert is not None and self.model is None:
            raise DefinitionError(
                f"monitor {self.name!r}: on_alert=gm.retrain() needs a model to retrain",
                location=self.location,
                hint="pass model= (quality monitors) or monitor a service",
            )


@dataclass(frozen=True)
class ServiceMonitor(Monitor):
    service: str
    service_model: str = ""

    @property
    def model(self) -> str | None:
        return self.service_model

    @property
    def subject(self) -> str:
        return self.service

    def validate_refs(
        self, nodes: Mapping[str, Definition], services: Mapping[str, Service]
    ) -> None:
        if self.service not in services:
            raise DefinitionError(
                f"monitor {self.name!r} watches service {self.service!r}, which the project "
                "does not define",
                location=self.location,
                hint=f"services: {', '.join(sorted(services)) or 'none'}",
            )
        super().validate_refs(nodes, services)


@dataclass(frozen=True)
class DriftMonitor(ServiceMonitor):
    """Each model feature and the score: reference = the champion's training set."""

    current: str = LOG
    """``log`` (the service's prediction log, a window back from now) or a table that has
    the model's features (a window back from its latest timestamp)."""
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    thresholds: tuple[tuple[str, float], ...] = ()

    @property
    def type(self) -> str:
        return "drift"

    def validate_refs(
        self, nodes: Mapping[str, Definition], services: Mapping[str, Service]
    ) -> None:
        super().validate_refs(nodes, services)
        if self.current != LOG:
            _feature_view(self, self.current, nodes)


@dataclass(frozen=True)
class PerformanceMonitor(ServiceMonitor):
    """Predictions joined to labels that arrive later; metric vs the model's test metric."""

    labels: str = ""
    label: str = ""
    label_timestamp: str = ""
    predictions: str = LOG
    """``log`` or a predictions table (``gristmill score`` writes ``<model>__predictions``)."""
    horizon: timedelta = timedelta(days=31)
    """A label answers the first prediction for its entity at most this long before it."""
    metric: str = "roc_auc"
    max_drop: float = 0.05

    @property
    def type(self) -> str:
        return "performance"

    def validate_refs(
        self, nodes: Mapping[str, Definition], services: Mapping[str, Service]
    ) -> None:
        super().validate_refs(nodes, services)
        if self.labels not in nodes:
            raise DefinitionError(
                f"monitor {self.name!r} reads labels {self.labels!r}, which the project does "
                "not define",
                location=self.location,
            )


@dataclass(frozen=True)
class QualityMonitor(Monitor):
    """A table's latest version vs the one before: contracts, freshness, volume, drift."""

    table: str = ""
    freshness: timedelta | None = None
    """Alert when the newest row (the feature view's timestamp) or, for other tables, the
    newest version is older than this."""
    volume_change: float = 0.5
    """Alert when the row count changes by more than this share from the last version."""
    max_quarantine_share: float = 0.01
    distribution_psi: float = 0.2
    columns: tuple[str, ...] | None = None
    retrain_model: str | None = None

    @property
    def type(self) -> str:
        return "quality"

    @property
    def model(self) -> str | None:
        return self.retrain_model

    @property
    def subject(self) -> str:
        return self.table

    def validate_refs(
        self, nodes: Mapping[str, Definition], services: Mapping[str, Service]
    ) -> None:
        if self.table not in nodes or isinstance(nodes[self.table], Model):
            raise DefinitionError(
                f"monitor {self.name!r} checks {self.table!r}, which is not a table of the project",
                location=self.location,
            )
        if self.retrain_model is not None and not isinstance(nodes.get(self.retrain_model), Model):
            raise DefinitionError(
                f"monitor {self.name!r}: {self.retrain_model!r} is not a model",
                location=self.location,
            )
        super().validate_refs(nodes, services)


def retrain(*, approval: str = "auto", alias: str = "champion") -> Retrain:
    """Retrain the monitored model on a fresh training set when the monitor alerts; the new
    version becomes ``alias`` if its gates pass (``approval="manual"``: it waits as a
    pending promotion that ``gristmill promote`` completes)."""
    try:
        return Retrain(approval=Approval(approval), alias=alias)
    except ValueError:
        raise DefinitionError(
            f"approval must be 'auto' or 'manual', not {approval!r}", location=_caller_location()
        ) from None


def drift_monitor(
    name: str,
    *,
    service: str,
    current: str = LOG,
    window: str | timedelta = "7d",
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    thresholds: Mapping[str, float] | None = None,
    min_rows: int = 100,
    webhook: str | None = None,
    on_alert: Retrain | None = None,
    description: str = "",
) -> DriftMonitor:
    """Drift of a service's features and score from its champion's training set.

    Args:
        current: ``"log"`` (the prediction log) or a feature view with the model's features.
        window: how far back ``current`` reaches (from now, or from the table's newest row).
        features, exclude: the model features to watch (default: all, and the score).
        thresholds: statistic -> threshold, e.g. ``{"psi": 0.2, "ks": 0.1}``; p-values
            (``ks_p``, ``chi2_p``) alert below theirs. Default: psi 0.2, null_rate 0.1,
            new_categories 0.01.
    """
    location = _caller_location()
    common = _service_fields(
        name, location, service, window, min_rows, webhook, on_alert, description
    )
    chosen = dict(thresholds if thresholds is not None else DEFAULT_DRIFT)
    unknown = sorted(set(chosen) - set(DRIFT_STATISTICS))
    if unknown or not chosen:
        raise DefinitionError(
            f"monitor {name!r}: unknown statistic(s) {', '.join(unknown) or '(none given)'}",
            location=location,
            hint=f"statistics: {', '.join(DRIFT_STATISTICS)}",
        )
    return DriftMonitor(
        **common,
        current=current,
        features=tuple(features) if features is not None else None,
        exclude=tuple(exclude),
        thresholds=tuple(sorted((k, float(v)) for k, v in chosen.items())),
    )


def performance_monitor(
    name: str,
    *,
    service: str,
    labels: str,
    label: str,
    timestamp: str,
    predictions: str = LOG,
    horizon: str | timedelta = "31d",
    window: str | timedelta = "30d",
    metric: str = "roc_auc",
    max_drop: float = 0.05,
    min_rows: int = 100,
    webhook: str | None = None,
    on_alert: Retrain | None = None,
    description: str = "",
) -> PerformanceMonitor:
    """The service's metric on predictions whose labels arrived, vs the model's test metric.

    Each prediction is joined to its entity's first label at or after the prediction
    time and at most ``horizon`` later (``labels`` table, ``label`` column, ``timestamp``
    column). Alerts when the metric is ``max_drop`` or more below the model's test value.
    """
    location = _caller_location()
    common = _service_fields(
        name, location, service, window, min_rows, webhook, on_alert, description
    )
    if metric not in PERFORMANCE_METRICS:
        raise DefinitionError(
            f"monitor {name!r}: unknown metric {metric!r}",
            location=location,
            hint=f"metrics: {', '.join(PERFORMANCE_METRICS)}",
        )
    return PerformanceMonitor(
        **common,
        labels=labels,
        label=label,
        label_timestamp=timestamp,
        predictions=predictions,
        horizon=_window(horizon, location),
        metric=metric,
        max_drop=float(max_drop),
    )


def quality_monitor(
    name: str,
    *,
    table: str,
    freshness: str | timedelta | None = None,
    volume_change: float = 0.5,
    max_quarantine_share: float = 0.01,
    distribution_psi: float = 0.2,
    columns: Sequence[str] | None = None,
    model: str | None = None,
    webhook: str | None = None,
    on_alert: Retrain | None = None,
    description: str = "",
) -> QualityMonitor:
    """Checks on every new version of ``table``: freshness, row-count change, the share
    quarantined by its contract, and per-column PSI vs the version before."""
    location = _caller_location()
    check_name(name, location)
    return QualityMonitor(
        name=name,
        location=location,
        description=description,
        window=timedelta(0),
        min_rows=1,
        webhook=_webhook(name, webhook, location),
        on_alert=on_alert,
        table=table,
        freshness=_window(freshness, location) if freshness is not None else None,
        volume_change=float(volume_change),
        max_quarantine_share=float(max_quarantine_share),
        distribution_psi=float(distribution_psi),
        columns=tuple(columns) if columns is not None else None,
        retrain_model=model,
    )


def bind(monitor: Monitor, services: Mapping[str, Service]) -> Monitor:
    """Fill in the model a service monitor's retrain trigger retrains."""
    from dataclasses import replace

    if isinstance(monitor, ServiceMonitor) and monitor.service in services:
        return replace(monitor, service_model=services[monitor.service].model)
    return monitor


def _feature_view(monitor: Monitor, name: str, nodes: Mapping[str, Definition]) -> None:
    node = nodes.get(name)
    if timestamp_of(node) is None:
        raise DefinitionError(
            f"monitor {monitor.name!r}: current={name!r} is not a feature view or training set "
            "of the project",
            location=monitor.location,
            hint="current is 'log', a gm.feature_view or a gm.training_set with the model's "
            "features",
        )


def timestamp_of(node: Definition | None) -> str | None:
    """The time column of a feature view (its timestamp) or a training set (label time)."""
    if isinstance(node, Table) and node.feature is not None:
        return node.feature.timestamp
    if isinstance(node, TrainingSet):
        return node.timestamp
    return None


def _webhook(name: str, webhook: str | None, location: Location) -> str | None:
    from gristmill.definitions.urls import check_url

    if webhook is not None and (problem := check_url(webhook)) is not None:
        raise DefinitionError(f"monitor {name!r}: {problem}", location=location)
    return webhook


def _service_fields(
    name: str,
    location: Location,
    service: str,
    window: str | timedelta,
    min_rows: int,
    webhook: str | None,
    on_alert: Retrain | None,
    description: str,
) -> dict[str, Any]:
    """The fields every monitor of a service takes, checked."""
    check_name(name, location)
    return {
        "name": name,
        "location": location,
        "description": description,
        "service": service,
        "window": _window(window, location),
        "min_rows": _min_rows(min_rows, location),
        "webhook": _webhook(name, webhook, location),
        "on_alert": on_alert,
    }


def _window(value: str | timedelta, location: Location) -> timedelta:
    window = parse_duration(value, location)
    if window <= timedelta(0):
        raise DefinitionError("a window must be longer than zero", location=location)
    return window


def _min_rows(value: int, location: Location) -> int:
    if value < 1:
        raise DefinitionError("min_rows must be 1 or more", location=location)
    return value
