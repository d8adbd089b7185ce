"""Drift of a model's features and score between its training set and what it sees now."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.definitions.monitors import DRIFT_STATISTICS
from gristmill.execution.engines import Session
from gristmill.execution.ml.bundle import LoadedModel
from gristmill.execution.ml.features import Feature, FeatureKind
from gristmill.execution.monitoring import engine_stats
from gristmill.execution.monitoring.findings import Finding
from gristmill.execution.monitoring.stats import ColumnDrift, Kind, column_drift
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
    return findings_of((column_drift(*pair) for pair in pairs), thresholds)


def findings_of(
    drifts: Iterable[ColumnDrift], thresholds: Mapping[str, float]
) -> tuple[list[Finding], dict[str, dict[str, Any]]]:
    """Every statistic of every column, and each column's histogram."""
    out: list[Finding] = []
    charts: dict[str, dict[str, Any]] = {}
    for drift in drifts:
        name = drift.column
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


def engine_drifts(
    session: Session, reference: str, current: str, names: Iterable[str]
) -> Iterator[ColumnDrift]:
    """Each column's statistics, aggregated by the engine where the rows are
    (``engine_stats``): what runs on Spark, where no column comes to this process."""
    kinds = dict(session.columns(reference))
    for name in names:
        kind = Kind.NUMERIC if engine_stats.is_numeric(kinds[name]) else Kind.CATEGORICAL
        yield engine_stats.column_drift(session, name, (reference, name), (current, name), kind)


def scores_by_workers(
    session: Session, sql: str, model: LoadedModel, files: tuple[bytes, bytes], folder: Path
) -> list[str]:
    """The model's score of every row of ``sql``, computed and written by the engine's
    workers (each loads the model from its two files' bytes, digest checked) as Parquet
    files below ``folder``, whose paths are returned: a single ``score`` column."""
    from gristmill.execution.ml.scoring import model_mapper

    schema = pa.schema([pa.field(SCORE, pa.float64())])
    plan = model_mapper(
        model,
        files,
        lambda rows: schema,
        lambda loaded, batch, out: pa.RecordBatch.from_arrays(
            [pa.array(loaded.predict(batch), pa.float64())], schema=out
        ),
    )
    session.write_mapped(sql, folder, plan)
    return sorted(str(p) for p in folder.glob("*.parquet"))


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
