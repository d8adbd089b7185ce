"""Building a training set: labels joined point-in-time to feature views, in the engine.

For every label row and every feature view, DuckDB's ASOF LEFT JOIN takes the latest
feature row of the same entity whose timestamp is at or before the label's timestamp.
A feature row from after the label time can never match, so leakage is impossible by
construction. Label rows with no feature row in range (none before, or older than the
view's TTL) keep null features and are counted per view in the materialization's stats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gristmill.definitions.contracts import Contract
from gristmill.definitions.models import FeatureRef, TrainingSet
from gristmill.definitions.objects import Definition, Table
from gristmill.errors import StepFailed
from gristmill.execution.engines import Session
from gristmill.execution.sql import q
from gristmill.execution.writer import WriteRequest, write
from gristmill.planning import WriteMode
from gristmill.storage.catalog import Materialization
from gristmill.storage.lake import Lake

JOINED = "__gm_training_set"


@dataclass(frozen=True)
class _ViewJoin:
    ref: FeatureRef
    alias: str
    entity: tuple[str, ...]
    timestamp: str
    columns: dict[str, str]
    """Source column -> output column."""

    @property
    def found_column(self) -> str:
        """Output column holding the matched feature row's timestamp (null: no match)."""
        return f"{self.ref.prefix}{self.ref.view}__{self.timestamp}"


def build(
    session: Session,
    lake: Lake,
    spec: TrainingSet,
    nodes: Mapping[str, Definition],
    template: Materialization,
) -> Materialization:
    label_columns = [c for c, _ in session.columns(spec.labels)]
    _require(spec, spec.labels, label_columns, [*spec.entity, spec.timestamp, spec.label])
    joins = [_view_join(session, spec, i, ref, nodes) for i, ref in enumerate(spec.features)]
    _check_collisions(spec, label_columns, joins)
    if session.WRITES_FILES:  # Spark: its executors write the rows, the lake commits them
        return _build_by_workers(session, lake, spec, joins, label_columns, template)
    session.materialize(JOINED, point_in_time_sql(spec, joins))
    stats = _stats(session, spec, joins)
    return write(
        session,
        lake,
        WriteRequest(
            table=spec.name,
            relation=JOINED,
            contract=Contract(),
            mode=WriteMode.OVERWRITE,
            template=replace(template, stats=stats),
        ),
    )


def point_in_time_sql(spec: TrainingSet, joins: list[_ViewJoin]) -> str:
    selected = ["l.*"]
    from_clause = f"{q(spec.labels)} AS l"
    for j in joins:
        ts = f"{j.alias}.__gm_ts"
        in_range = f"{ts} IS NOT NULL"
        if j.ref.ttl is not None:
            seconds = j.ref.ttl.total_seconds()
            in_range += (
                f" AND {ts} >= l.{q(spec.timestamp)} - to_microseconds({int(seconds * 1e6)})"
            )
        for source, output in j.columns.items():
            selected.append(f"CASE WHEN {in_range} THEN {j.alias}.{q(source)} END AS {q(output)}")
        selected.append(f"CASE WHEN {in_range} THEN {ts} END AS {q(j.found_column)}")
        keys = ", ".join(q(k) for k in j.entity)
        cols = ", ".join(q(c) for c in j.columns)
        on = " AND ".join(f"l.{q(k)} = {j.alias}.{q(k)}" for k in j.entity)
        from_clause += (
            f"\nASOF LEFT JOIN (SELECT {keys}, {q(j.timestamp)} AS __gm_ts, {cols} "
            f"FROM {q(j.ref.view)}) AS {j.alias}"
            f"\n  ON {on} AND l.{q(spec.timestamp)} >= {j.alias}.__gm_ts"
        )
    return f"SELECT {', '.join(selected)}\nFROM {from_clause}"


def _build_by_workers(
    session: Session,
    lake: Lake,
    spec: TrainingSet,
    joins: list[_ViewJoin],
    label_columns: list[str],
    template: Materialization,
) -> Materialization:
    import uuid

    from gristmill.execution.writer import commit_files

    for i, sql in enumerate(chained_point_in_time_sql(spec, joins, label_columns)):
        session.define(f"{JOINED}_{i}", sql)
    session.define(JOINED, f"SELECT * FROM {q(f'{JOINED}_{len(joins)}')}")
    stats = _stats(session, spec, joins)
    folder = lake.files_folder(spec.name, f"{template.run_id}-{uuid.uuid4().hex[:8]}")
    session.write_files(f"SELECT * FROM {q(JOINED)}", folder)
    request = WriteRequest(
        table=spec.name,
        relation=JOINED,
        contract=Contract(),
        mode=WriteMode.OVERWRITE,
        template=replace(template, stats=stats),
    )
    return commit_files(lake, request, folder)


def chained_point_in_time_sql(
    spec: TrainingSet, joins: list[_ViewJoin], label_columns: list[str]
) -> list[str]:
    """The point-in-time join as one ASOF LEFT JOIN per query, each over the previous one
    (view ``JOINED_i``), then the TTL applied: the shape the Spark dialect translates (an
    ASOF join alone in its SELECT, its left side a table). The same rows as
    ``point_in_time_sql``; the tests compare them."""
    kept = [f"l.{q(c)}" for c in label_columns]
    queries = []
    for i, j in enumerate(joins):
        keys = ", ".join(q(k) for k in j.entity)
        cols = ", ".join(q(c) for c in j.columns)
        on = " AND ".join(f"l.{q(k)} = {j.alias}.{q(k)}" for k in j.entity)
        found = [f"{j.alias}.__gm_ts AS {q(f'__gm_ts_{i}')}"] + [
            f"{j.alias}.{q(source)} AS {q(f'__gm_{i}_{source}')}" for source in j.columns
        ]
        left = q(f"{JOINED}_{i - 1}") if i else q(spec.labels)
        queries.append(
            f"SELECT {', '.join(kept + found)}\nFROM {left} AS l\n"
            f"ASOF LEFT JOIN (SELECT {keys}, {q(j.timestamp)} AS __gm_ts, {cols} "
            f"FROM {q(j.ref.view)}) AS {j.alias}\n  ON {on} AND l.{q(spec.timestamp)} >= "
            f"{j.alias}.__gm_ts"
        )
        kept += [f"l.{q(f'__gm_ts_{i}')}"] + [f"l.{q(f'__gm_{i}_{c}')}" for c in j.columns]
    selected = [f"l.{q(c)}" for c in label_columns]
    for i, j in enumerate(joins):
        ts = f"l.{q(f'__gm_ts_{i}')}"
        in_range = f"{ts} IS NOT NULL"
        if j.ref.ttl is not None:
            micros = int(j.ref.ttl.total_seconds() * 1e6)
            in_range += f" AND {ts} >= l.{q(spec.timestamp)} - INTERVAL '{micros}' MICROSECOND"
        for source, output in j.columns.items():
            value = f"l.{q(f'__gm_{i}_{source}')}"
            selected.append(f"CASE WHEN {in_range} THEN {value} END AS {q(output)}")
        selected.append(f"CASE WHEN {in_range} THEN {ts} END AS {q(j.found_column)}")
    last = q(f"{JOINED}_{len(joins) - 1}") if joins else q(spec.labels)
    queries.append(f"SELECT {', '.join(selected)}\nFROM {last} AS l")
    return queries


def _view_join(
    session: Session, spec: TrainingSet, i: int, ref: FeatureRef, nodes: Mapping[str, Definition]
) -> _ViewJoin:
    view = nodes[ref.view]
    assert isinstance(view, Table) and view.feature is not None
    available = [c for c, _ in session.columns(ref.view)]
    keys = {*view.feature.entity, view.feature.timestamp}
    wanted = (
        list(ref.columns) if ref.columns is not None else [c for c in available if c not in keys]
    )
    _require(spec, ref.view, available, [*view.feature.entity, view.feature.timestamp, *wanted])
    return _ViewJoin(
        ref=ref,
        alias=f"f{i}",
        entity=view.feature.entity,
        timestamp=view.feature.timestamp,
        columns={c: f"{ref.prefix}{c}" for c in wanted},
    )


def _require(spec: TrainingSet, table: str, available: list[str], needed: list[str]) -> None:
    missing = [c for c in dict.fromkeys(needed) if c not in available]
    if missing:
        raise StepFailed(
            f"{spec.name}: {table!r} has no column(s) {', '.join(missing)}",
            location=spec.location,
            hint=f"{table!r} has: {', '.join(available)}",
        )


def _check_collisions(spec: TrainingSet, label_columns: list[str], joins: list[_ViewJoin]) -> None:
    seen = {c: spec.labels for c in label_columns}
    for j in joins:
        for output in [*j.columns.values(), j.found_column]:
            if output in seen:
                raise StepFailed(
                    f"{spec.name}: column {output!r} of {j.ref.view!r} clashes with "
                    f"{seen[output]!r}",
                    location=spec.location,
                    hint=f"gm.features({j.ref.view!r}, prefix=...) keeps the columns apart",
                )
            seen[output] = j.ref.view


def _stats(session: Session, spec: TrainingSet, joins: list[_ViewJoin]) -> dict[str, Any]:
    counts = ", ".join(f"count(*) FILTER (WHERE {q(j.found_column)} IS NULL)" for j in joins)
    ((labels, *missing),) = session.rows(f"SELECT count(*), {counts} FROM {JOINED}")
    return {
        "labels": int(labels),
        "entity": list(spec.entity),
        "timestamp": spec.timestamp,
        "label": spec.label,
        "features": [c for j in joins for c in j.columns.values()],
        "feature_timestamps": [j.found_column for j in joins],
        "missing": {j.ref.view: int(n) for j, n in zip(joins, missing, strict=True)},
    }
