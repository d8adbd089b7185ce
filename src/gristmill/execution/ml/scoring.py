"""Batch scoring: a table version in, a versioned predictions table out, in batches.

The engine streams the rows to score (for a feature view: each entity's latest row at
or before ``as_of``) as Arrow record batches; each batch is encoded, scored and handed
straight to the Delta writer, so memory holds a batch or two, not the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pyarrow as pa

from gristmill.definitions.models import Task
from gristmill.execution.engines import Session
from gristmill.execution.ml.bundle import LoadedModel
from gristmill.execution.sql import latest_rows, q
from gristmill.storage.catalog import Materialization
from gristmill.storage.lake import Lake

SCORED = "__gm_to_score"


@dataclass(frozen=True)
class ScoreRequest:
    table: str
    version: int
    into: str
    keys: tuple[str, ...]
    """Columns carried into the predictions (a feature view's entity and timestamp)."""
    timestamp: str | None = None
    as_of: datetime | None = None
    batch_rows: int = 65_536


def rows_sql(request: ScoreRequest, features: list[str]) -> str:
    columns = ", ".join(q(c) for c in dict.fromkeys([*request.keys, *features]))
    if request.timestamp is None:
        return f"SELECT {columns} FROM {q(request.table)}"
    entity = [k for k in request.keys if k != request.timestamp]
    return latest_rows(request.table, entity, request.timestamp, columns, as_of=request.as_of)


def score(
    session: Session,
    lake: Lake,
    model: LoadedModel,
    request: ScoreRequest,
    template: Materialization,
) -> Materialization:
    reader = session.reader(rows_sql(request, model.feature_names), request.batch_rows)
    classify = model.manifest.task is Task.CLASSIFICATION
    extra = [pa.field("score", pa.float64())]
    if classify:
        extra.append(pa.field("predicted", pa.int8()))
    extra += [pa.field("model", pa.string()), pa.field("model_version", pa.int32())]
    keys = [reader.schema.field(k) for k in request.keys]
    schema = pa.schema([*keys, *extra])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            scores = model.predict(batch)
            n = batch.num_rows
            columns = [batch.column(k) for k in request.keys] + [pa.array(scores)]
            if classify:
                columns.append(pa.array((scores >= model.manifest.threshold).astype(np.int8)))
            columns += [
                pa.array([model.name] * n, pa.string()),
                pa.array(np.full(n, model.version, dtype=np.int32)),
            ]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    record = replace(template, table_name=request.into, version=-1)
    written = lake.write(
        request.into,
        pa.RecordBatchReader.from_batches(schema, batches()),
        mode="overwrite",
        record=record.to_record(),
        merge_schema=False,
    )
    return replace(
        record,
        version=written.version,
        rows=written.rows,
        rows_added=written.rows,
        schema=[{"name": f.name, "type": str(f.type)} for f in schema],
    )
