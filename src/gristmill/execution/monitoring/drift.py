"""Drift of a model's features and score between its training set and what it sees now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pyarrow as pa

from gristmill.definitions.monitors import DRIFT_STATISTICS
from gristmill.execution.engines import Session
from gristmill.execution.ml.features import Feature, FeatureKind
from gristmill.execution.monitoring.findings import Finding
from gristmill.execution.monitoring.stats import column_drift
from gristmill.execution.sql import q

SCORE = "score"


def findings(
    reference: pa.Table, current: pa.Table, thresholds: Mapping[str, float]
) -> tuple[list[Finding], dict[str, dict]]:
    """Every statistic of every column the two tables share, and each column's histogram.

    Columns are compared one at a time, so the memory beyond the two tables is a few
    copies of one column.
    """
    out: list[Finding] = []
    charts: dict[str, dict] = {}
    for name in reference.column_names:
        if name not in current.column_names:
            continue
        drift = column_drift(name, reference[name], current[name])
        charts[name] = {"kind": drift.kind.value, **drift.histogram}
        for statistic, value in drift.values.items():
            out.append(
                Finding(
                    subject=name,
                    statistic=statistic,
                    value=value,
                    threshold=thresholds.get(statistic),
                    above_alerts=DRIFT_STATISTICS.get(statistic, True),
                )
            )
    return out, charts


def log_rows_sql(relation: str, features: Sequence[Feature], start: datetime, end: datetime) -> str:
    """The served requests of a window as typed feature columns plus the score."""
    columns = [_from_json(f) for f in features]
    return (
        f"SELECT {', '.join(columns)}, score AS {SCORE} FROM {q(relation)} "
        f"WHERE served AND \"at\" >= TIMESTAMPTZ '{start.isoformat()}' "
        f"AND \"at\" < TIMESTAMPTZ '{end.isoformat()}'"
    )


def table_rows_sql(
    relation: str, features: Sequence[Feature], timestamp: str, start: datetime
) -> str:
    columns = ", ".join(q(f.name) for f in features)
    return (
        f"SELECT {columns} FROM {q(relation)} "
        f"WHERE {q(timestamp)} > TIMESTAMP '{start.replace(tzinfo=None).isoformat()}'"
    )


def fetch(session: Session, sql: str) -> pa.Table:
    return session.reader(sql).read_all()


def _from_json(feature: Feature) -> str:
    path = f"'$.\"{feature.name}\"'"
    if feature.kind is FeatureKind.CATEGORICAL:
        return f"json_extract_string(features, {path}) AS {q(feature.name)}"
    return f"TRY_CAST(json_extract(features, {path}) AS DOUBLE) AS {q(feature.name)}"
