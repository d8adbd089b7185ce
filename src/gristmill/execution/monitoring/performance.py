"""Performance once labels arrive: predictions joined to their labels, metrics per window.

A label answers a prediction when it is the entity's first label at or after the
prediction's time and no more than ``horizon`` after it (DuckDB's ASOF join). The metric
is the one training reported (the same code, with the same bootstrap interval), so a
drop is measured against the model's own test value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from gristmill.definitions.models import Task
from gristmill.execution.engines import Session
from gristmill.execution.ml import metrics
from gristmill.execution.sql import q


@dataclass(frozen=True)
class Predictions:
    """Where predictions are read: a relation with entity columns, a time and a score."""

    relation: str
    entity: tuple[str, ...]
    time: str
    from_log: bool
    """The prediction log keeps the entity as JSON and only served rows count."""


@dataclass(frozen=True)
class Labels:
    relation: str
    entity: tuple[str, ...]
    time: str
    label: str


def joined_sql(
    predictions: Predictions, labels: Labels, horizon: timedelta, start: datetime, end: datetime
) -> str:
    """(prediction time, score, label) of the window's predictions that have a label."""
    if predictions.from_log:
        keys = ", ".join(
            f"json_extract_string(entity, '$.\"{k}\"') AS {q(k)}" for k in predictions.entity
        )
        source = (
            f'SELECT {keys}, CAST("at" AS TIMESTAMP) AS __t, score FROM {q(predictions.relation)} '
            "WHERE served"
        )
    else:
        keys = ", ".join(f"CAST({q(k)} AS VARCHAR) AS {q(k)}" for k in predictions.entity)
        source = (
            f"SELECT {keys}, CAST({q(predictions.time)} AS TIMESTAMP) AS __t, score "
            f"FROM {q(predictions.relation)}"
        )
    label_keys = ", ".join(
        f"CAST({q(k)} AS VARCHAR) AS {q(p)}"
        for k, p in zip(labels.entity, predictions.entity, strict=True)
    )
    on = " AND ".join(f"p.{q(k)} = l.{q(k)}" for k in predictions.entity)
    seconds = int(horizon.total_seconds())
    lo, hi = _naive(start), _naive(end)
    return (
        f"WITH p AS ({source}), "
        f"l AS (SELECT {label_keys}, CAST({q(labels.time)} AS TIMESTAMP) AS __lt, "
        f"CAST({q(labels.label)} AS DOUBLE) AS __y FROM {q(labels.relation)} "
        f"WHERE {q(labels.label)} IS NOT NULL) "
        f"SELECT p.__t, p.score, l.__y FROM p ASOF JOIN l ON {on} AND l.__lt >= p.__t "
        f"WHERE p.__t >= TIMESTAMP '{lo}' AND p.__t <= TIMESTAMP '{hi}' "
        f"AND l.__lt <= p.__t + INTERVAL {seconds} SECOND "
        f"ORDER BY p.__t, p.score"
    )


def prediction_span_sql(predictions: Predictions) -> str:
    where = " WHERE served" if predictions.from_log else ""
    column = q("at") if predictions.from_log else q(predictions.time)
    return (
        f"SELECT max(CAST({column} AS TIMESTAMP)), count(*) FROM {q(predictions.relation)}{where}"
    )


def measure(
    session: Session,
    sql: str,
    task: Task,
    metric: str,
    *,
    threshold: float,
    resamples: int = 200,
    seed: int = 0,
) -> tuple[dict[str, float | None], int, float]:
    """The metric with its interval over the joined rows, their count, and the positive rate."""
    rows = session.reader(sql).read_all()
    if rows.num_rows == 0:
        return {"value": None, "low": None, "high": None}, 0, float("nan")
    y = rows["__y"].to_numpy()
    scores = rows["score"].to_numpy()
    if task is Task.CLASSIFICATION and len(np.unique(y)) < 2:
        return {"value": None, "low": None, "high": None}, rows.num_rows, float(y.mean())
    values = metrics.evaluate(task, y, scores, threshold=threshold, resamples=resamples, seed=seed)
    return values[metric], rows.num_rows, float(y.mean())


def _naive(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(sep=" ")
