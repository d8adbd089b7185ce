"""Parquet files written by someone else (Spark's executors) as Delta add actions.

An engine that writes a step's result with its own workers puts the files in a folder
inside the table's directory; the lake then commits them in one Delta transaction, with
the statistics Delta readers prune by, taken from each file's footer. A statistic that
could be wrong is left out rather than approximated: a min or max that is not a true bound
would make a reader skip rows that match.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.errors import LakeError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

STRING_PREFIX = 32
"""Delta's usual cut for string statistics: a longer min or max is left out."""


@dataclass(frozen=True)
class FileActions:
    schema: pa.Schema
    actions: list[AddAction]
    rows: int


def file_actions(table: Path, folder: Path) -> FileActions:
    """An add action per Parquet file below ``folder`` (inside ``table``), with its rows,
    null counts and the bounds that are exact; refused when the files disagree on their
    schema or hold what Delta cannot (nanosecond or INT96 timestamps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    files = sorted(
        p for p in folder.rglob("*.parquet") if not p.name.startswith(("_", ".")) and p.is_file()
    )
    if not files:
        raise LakeError(f"no Parquet files were written to {folder}")
    schema: pa.Schema | None = None
    actions = []
    rows = 0
    for path in files:
        meta = pq.ParquetFile(path)
        file_schema = meta.schema_arrow
        _refuse_unsupported(path, file_schema)
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise LakeError(
                f"{path.name} has another schema than {files[0].name}: {file_schema} vs {schema}",
                hint="every file of one result must come from one query",
            )
        stats = _stats(meta.metadata, file_schema)
        rows += stats["numRecords"]
        info = path.stat()
        actions.append(
            AddAction(
                path=path.relative_to(table).as_posix(),
                size=info.st_size,
                partition_values={},
                modification_time=int(info.st_mtime * 1000),
                data_change=True,
                stats=json.dumps(stats),
            )
        )
    assert schema is not None
    # a column its writer knew had no NULLs (Spark's count) may hold some in a later version
    schema = pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
    return FileActions(schema, actions, rows)


def _refuse_unsupported(path: Path, schema: pa.Schema) -> None:
    import pyarrow as pa

    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            raise LakeError(
                f"{path.name}: column {field.name!r} holds nanosecond (or INT96) timestamps, "
                "which Delta cannot",
                hint="write microseconds (Spark: spark.sql.parquet.outputTimestampType="
                "TIMESTAMP_MICROS)",
            )


def _stats(meta: pq.FileMetaData, schema: pa.Schema) -> dict[str, Any]:
    """numRecords, nullCount, and minValues/maxValues where every row group has exact
    ones, for the top-level columns of plain types."""
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    positions = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for field in schema:
        index = positions.get(field.name)  # a nested column has no single leaf
        if index is None:
            continue
        count, low, high, exact = 0, None, None, True
        for g in range(meta.num_row_groups):
            column = meta.row_group(g).column(index)
            s = column.statistics
            if s is None or not s.has_null_count:
                exact, count = False, -1
                break
            count += s.null_count
            if not s.has_min_max:
                if s.null_count < meta.row_group(g).num_rows:
                    exact = False  # values without bounds
                continue
            low = s.min if low is None else min(low, s.min)
            high = s.max if high is None else max(high, s.max)
        if count >= 0:
            nulls[field.name] = count
        if exact and low is not None:
            bounds = _bounds(field.type, low, high)
            if bounds is not None:
                lows[field.name], highs[field.name] = bounds
    return {
        "numRecords": meta.num_rows,
        "minValues": lows,
        "maxValues": highs,
        "nullCount": nulls,
    }


def _bounds(kind: pa.DataType, low: Any, high: Any) -> tuple[Any, Any] | None:
    """The bounds as Delta's JSON statistics hold them, or None when they could mislead."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return low, high
    if pa.types.is_floating(kind):
        if any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
            return None
        return low, high
    if pa.types.is_decimal(kind) and isinstance(low, Decimal):
        return float(low), float(high)  # as delta-rs writes them
    if pa.types.is_date(kind):
        return low.isoformat(), high.isoformat()
    if pa.types.is_timestamp(kind) and kind.unit in ("us", "ms", "s"):
        # the log holds milliseconds: the low bound rounded down, the high one up
        ceiling = high + dt.timedelta(microseconds=(1000 - high.microsecond % 1000) % 1000)
        return _timestamp(low.replace(microsecond=low.microsecond // 1000 * 1000)), _timestamp(
            ceiling
        )
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if len(low) > STRING_PREFIX or len(high) > STRING_PREFIX:
            return None
        return low, high
    return None


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
