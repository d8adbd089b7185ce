"""The prediction log's shape: one row per answer, in ``<service>__prediction_log``.

Rows are tuples in ``SCHEMA`` order, encoded by the worker that answered (nested values
as JSON text, the time in microseconds) and written to its spool (``serving/spool.py``);
the drainer turns them into Arrow tables and commits them, with the served decisions also
in ``<service>__decisions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

if TYPE_CHECKING:
    from gristmill.serving.runtime import Prediction

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("service", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.int32()),
        pa.field("role", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("features", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("decision", pa.string()),
        pa.field("reasons", pa.string()),
        pa.field("found", pa.bool_()),
        pa.field("latency_ms", pa.float64()),
        pa.field("variant", pa.string()),
        pa.field("served", pa.bool_()),
    ]
)
SERVICE = SCHEMA.names.index("service")
JSON_FIELDS = {"entity", "features", "reasons"}
DECISIONS = ["request_id", "at", "service", "model_version", "entity", "score", "decision"]


def log_table(service: str) -> str:
    return f"{service}__prediction_log"


def decisions_table(service: str) -> str:
    return f"{service}__decisions"


def record_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record (a dict with the schema's names, ``at`` a datetime) as a spool row."""
    values = {"variant": "champion", "served": True, **record}
    values["at"] = round(values["at"].timestamp() * 1_000_000)
    return tuple(values.get(name) for name in SCHEMA.names)


def prediction_rows(answer: Prediction, role: str, at_us: int) -> list[tuple[Any, ...]]:
    """The spool rows of an answer: the served one and, if any, its shadow."""
    rows = [_row(answer, role, at_us, True)]
    if answer.shadow is not None:
        rows.append(_row(answer.shadow, role, at_us, False))
    return rows


def _row(p: Prediction, role: str, at_us: int, served: bool) -> tuple[Any, ...]:
    return (
        p.request_id,
        at_us,
        p.service,
        p.model,
        p.model_version,
        role,
        p.entity,
        p.features,
        p.score,
        p.decision,
        p.reasons,
        p.found,
        p.latency_ms,
        p.variant,
        served,
    )


def table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Spool rows (``at`` in microseconds, nested values as they were) as an Arrow table."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SCHEMA]
    arrays = []
    for values, field in zip(columns, SCHEMA, strict=True):
        if field.name in JSON_FIELDS:
            values = tuple(_text(v) for v in values)
        if field.name == "at":
            arrays.append(pa.array(values, type=pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.table(arrays, schema=SCHEMA)


def _text(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def decisions(log: pa.Table) -> pa.Table:
    """The served answers of a log table, as ``<service>__decisions`` keeps them."""
    return log.filter(log["served"]).select(DECISIONS)
