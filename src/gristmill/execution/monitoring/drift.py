"""Drift of a model's features and score between its training set and what it sees now."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pyarrow as pa

from gristmill.definitions.monitors import DRIFT_STATISTICS
from gristmill.execution.engines import Session
from gristmill.execution.ml.bundle import LoadedModel
from gristmill.execution.ml.features import Feature, FeatureKind
from gristmill.execution.monitoring.findings import Finding
from gristmill.execution.monitoring.stats import column_drift
from gristmill.execution.sql import q

SCORE = "score"


Pair = tuple[str, pa.ChunkedArray | pa.Array, pa.ChunkedArray | pa.Array]
"""A column's name with its reference and its current values."""


def findings(
    pairs: Iterable[Pair], thresholds: Mapping[str, float]
) -> tuple[list[Finding], dict[str, dict[str, Any]]]:
    """Every statistic of every column pair, and each column's histogram.

    Pairs are taken one at a time (see ``column_pairs``), so the memory beyond the
    engine's is a few copies of one column.
    """
    out: list[Finding] = []
    charts: dict[str, dict[str, Any]] = {}
    for name, reference, current in pairs:
        drift = column_drift(name, reference, current)
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


def column_pairs(
    session: Session, reference: str, current: str, names: Iterable[str]
) -> Generator[Pair, None, None]:
    """One column of each relation at a time: the engine scans only that column.

    The next pair is read while the caller works on this one, so at most two pairs are
    held. The session is used by the reading thread alone until the pairs are consumed.
    """

    def read(name: str) -> Pair:
        return (
            name,
            fetch(session, f"SELECT {q(name)} FROM {q(reference)}").column(0),
            fetch(session, f"SELECT {q(name)} FROM {q(current)}").column(0),
        )

    queue = list(names)
    if not queue:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gristmill-drift") as reader:
        pending = reader.submit(read, queue[0])
        for following in queue[1:]:
            pair = pending.result()
            pending = reader.submit(read, following)
            yield pair
        yield pending.result()


def scores(session: Session, sql: str, model: LoadedModel) -> pa.ChunkedArray:
    """The model's score of every row of ``sql``, batch by batch; only the scores are kept."""
    chunks = [
        pa.array(model.predict(batch), pa.float64())
        for batch in session.reader(sql)
        if batch.num_rows
    ]
    return pa.chunked_array(chunks, pa.float64())


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
