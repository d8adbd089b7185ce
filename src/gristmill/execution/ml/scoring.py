"""Batch scoring: a table version in, a versioned predictions table out, in batches.

The engine streams the rows to score (for a feature view: each entity's latest row at
or before ``as_of``) as Arrow record batches; each batch is encoded, scored and handed
straight to the Delta writer, so memory holds a batch or two, not the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pyarrow as pa

from gristmill.definitions.models import Task
from gristmill.execution.engines import Session
from gristmill.execution.engines.base import Batches, Mapper
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


def scored_schema(model: LoadedModel, rows: pa.Schema, keys: tuple[str, ...]) -> pa.Schema:
    """The predictions' columns: the keys as read, the score, the decision, the model."""
    extra = [pa.field("score", pa.float64())]
    if model.manifest.task is Task.CLASSIFICATION:
        extra.append(pa.field("predicted", pa.int8()))
    extra += [pa.field("model", pa.string()), pa.field("model_version", pa.int32())]
    return pa.schema([*(rows.field(k) for k in keys), *extra])


def scored(
    model: LoadedModel, batch: pa.RecordBatch, keys: tuple[str, ...], schema: pa.Schema
) -> pa.RecordBatch:
    """One batch of rows, scored."""
    scores = model.predict(batch)
    n = batch.num_rows
    columns = [batch.column(k) for k in keys] + [pa.array(scores)]
    if model.manifest.task is Task.CLASSIFICATION:
        columns.append(pa.array((scores >= model.manifest.threshold).astype(np.int8)))
    columns += [
        pa.array([model.name] * n, pa.string()),
        pa.array(np.full(n, model.version, dtype=np.int32)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def score(
    session: Session,
    lake: Lake,
    model: LoadedModel,
    request: ScoreRequest,
    template: Materialization,
) -> Materialization:
    reader = session.reader(rows_sql(request, model.feature_names), request.batch_rows)
    schema = scored_schema(model, reader.schema, request.keys)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if batch.num_rows:
                yield scored(model, batch, request.keys, schema)

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


Turn = Callable[[LoadedModel, pa.RecordBatch, pa.Schema], pa.RecordBatch]


def model_mapper(
    model: LoadedModel,
    files: tuple[bytes, bytes],
    schema_of: Callable[[pa.Schema], pa.Schema],
    turn: Turn,
) -> Mapper:
    """What an engine's workers run over their batches with the model: each worker loads
    it from its two files' bytes (manifest, model; ``bundle.loads`` checks the model's
    digest again there) and turns every non-empty batch with ``turn``; ``schema_of``
    gives the output's schema from the rows'."""
    name, version = model.name, model.version

    def plan(rows: pa.Schema) -> tuple[Batches, pa.Schema]:
        schema = schema_of(rows)

        def work(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from gristmill.execution.ml.bundle import loads

            loaded = loads(name, version, *files)
            for batch in batches:
                if batch.num_rows:
                    yield turn(loaded, batch, schema)

        return work, schema

    return plan


def score_by_workers(
    session: Session,
    lake: Lake,
    model: LoadedModel,
    files: tuple[bytes, bytes],
    request: ScoreRequest,
    template: Materialization,
) -> Materialization:
    """Batch scoring on an engine whose workers write the rows (Spark): each worker loads
    the model from its two files' bytes (``files``: manifest, model; the model's digest
    checked again there) and scores its part of the rows a batch at a time; the lake
    commits the files they wrote. No row passes through this process."""
    import uuid

    from gristmill.definitions.contracts import Contract
    from gristmill.execution.writer import WriteRequest, commit_files
    from gristmill.planning import WriteMode

    folder = lake.files_folder(request.into, f"{template.run_id}-{uuid.uuid4().hex[:8]}")
    keys = request.keys
    plan = model_mapper(
        model,
        files,
        lambda rows: scored_schema(model, rows, keys),
        lambda loaded, batch, schema: scored(loaded, batch, keys, schema),
    )
    session.write_mapped(rows_sql(request, model.feature_names), folder, plan)
    into = WriteRequest(
        table=request.into,
        relation="",
        contract=Contract(),
        mode=WriteMode.OVERWRITE,
        template=replace(template, table_name=request.into),
    )
    return commit_files(lake, into, folder)
