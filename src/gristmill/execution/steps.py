"""The three kinds of step: ingest files, run SQL, call a Python function.

Each prepares a relation in the step's engine session and hands it to the writer.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_type_hints

import pyarrow as pa

from gristmill.definitions.config import PiiSettings
from gristmill.definitions.models import Model, TrainingSet
from gristmill.definitions.objects import Definition, Table
from gristmill.definitions.partitions import Partition, PartitionRange
from gristmill.definitions.sources import DatabaseSource, FileSource, IntakeSource, StreamSource
from gristmill.errors import (
    GristmillError,
    Location,
    MissingExtraError,
    StepFailed,
    is_transient,
)
from gristmill.execution.engines import Engine, EngineSqlError, Session
from gristmill.execution.ingest import check_files, raw_relation_sql
from gristmill.execution.ml.train import Trained
from gristmill.execution.sources.pii import pseudonymize
from gristmill.execution.writer import WriteRequest, write, write_rows
from gristmill.planning import PlannedStep, WriteMode
from gristmill.storage.artifacts import ArtifactStore
from gristmill.storage.catalog import CatalogReader, Materialization, ModelVersion
from gristmill.storage.lake import Lake

RELATION = "__gm_relation"
STEP_VIEW = "__gm_step"
EXISTING = "__gm_existing"
PARTITION_VIEW = "__gm_partitions"


@dataclass(frozen=True)
class StepContext:
    root: Path
    lake: Lake
    session: Session
    planned: PlannedStep
    definition: Definition
    inputs: dict[str, int]
    """Exact versions of the inputs, as read by this step."""
    template: Materialization
    previous: Materialization | None
    engine_scans_parquet: bool = False
    nodes: Mapping[str, Definition] = field(default_factory=dict)
    """The graph's definitions, for steps that read other definitions' settings."""
    state: CatalogReader | None = None
    artifacts: ArtifactStore | None = None
    partitions: tuple[Partition, ...] = ()
    """For a partitioned table: the partitions this commit builds (the rest stay)."""
    pii: PiiSettings | None = None
    """Where a source with personal-data columns finds its pseudonym key."""
    duckdb: Callable[[], Engine] | None = None
    """The run's DuckDB, for what a step on another engine hands to it (quarantined rows)."""


@dataclass(frozen=True)
class StepOutput:
    """What a step committed; a model step also registered a model version."""

    materialization: Materialization
    model_version: ModelVersion | None = None


def run_step(ctx: StepContext) -> StepOutput:
    for name, version in ctx.inputs.items():
        register_input(ctx, name, version)
    definition = ctx.definition
    if isinstance(definition, Model):
        trained = _train(ctx, definition)
        return StepOutput(trained.materialization, trained.model_version)
    return StepOutput(_materialize(ctx, definition))


def _materialize(ctx: StepContext, definition: Definition) -> Materialization:
    if isinstance(definition, DatabaseSource):
        from gristmill.execution.sources.database import extract

        return extract(ctx, definition)
    if isinstance(definition, IntakeSource):
        from gristmill.execution.sources import intake

        return intake.extract(ctx, definition, ctx.root / ".gristmill")
    if isinstance(definition, StreamSource):
        from gristmill.execution.sources import stream

        return stream.extract(ctx, definition)
    if isinstance(definition, FileSource):
        return _ingest(ctx, definition)
    if isinstance(definition, TrainingSet):
        from gristmill.execution import training_sets

        return training_sets.build(ctx.session, ctx.lake, definition, ctx.nodes, ctx.template)
    assert isinstance(definition, Table)
    if definition.function is not None:
        return _python(ctx, definition)
    return _sql(ctx, definition)


def register_input(ctx: StepContext, name: str, version: int, *, alias: str = "") -> None:
    """Expose one exact Delta version to the step under ``alias`` (default: its name)."""
    expose(ctx.session, ctx.lake, name, version, alias=alias, scan=ctx.engine_scans_parquet)


def expose(
    session: Session, lake: Lake, name: str, version: int, *, alias: str = "", scan: bool
) -> None:
    """Make a table version readable in ``session``.

    Engines that scan Parquet natively (``scan``) get the version's file list, resolved by
    deltalake from the Delta log (DuckDB's ASOF join over an Arrow dataset was 30x slower
    here); others, and versions that need Delta semantics, get an Arrow dataset.
    """
    files = lake.parquet_files(name, version) if scan else None
    if files is not None:
        session.register_parquet(alias or name, files)
    else:
        session.register(alias or name, lake.dataset(name, version))


def _ingest(ctx: StepContext, source: FileSource) -> Materialization:
    files = [f.path for f in ctx.planned.files]
    check_files(ctx.session, source, ctx.root, files)
    ctx.session.define(RELATION, raw_relation_sql(source, ctx.root, files))
    relation = pseudonymize(ctx.session, source, RELATION, ctx.pii or PiiSettings(), ctx.root)
    appending = ctx.planned.mode is WriteMode.APPEND and ctx.previous is not None
    if appending:
        assert ctx.previous is not None
        register_input(ctx, source.name, ctx.previous.version, alias=EXISTING)
    return write(
        ctx.session,
        ctx.lake,
        WriteRequest(
            table=source.name,
            relation=relation,
            contract=source.contract,
            mode=ctx.planned.mode if appending else WriteMode.OVERWRITE,
            template=ctx.template,
            keep_only_declared=True,
            existing=EXISTING if appending else None,
            previous_rows=ctx.previous.rows if appending and ctx.previous else 0,
            files=ctx.planned.files,
            no_stats=tuple(c for c, _ in source.pii),
        ),
    )


def _train(ctx: StepContext, model: Model) -> Trained:
    from gristmill.execution.ml.train import train

    assert ctx.state is not None and ctx.artifacts is not None
    training_set = ctx.state.materialization(model.training_set, ctx.inputs[model.training_set])
    assert training_set is not None, "the runner only starts steps whose inputs exist"
    version = ctx.previous.version + 1 if ctx.previous else 1
    return train(ctx.session, ctx.artifacts, model, training_set, ctx.template, version)


def _sql(ctx: StepContext, table: Table) -> Materialization:
    sql = (table.sql or "").strip().rstrip(";")
    if ctx.session.WRITES_FILES:
        return _sql_by_workers(ctx, table, sql)
    if table.contract.is_empty and not ctx.partitions:
        # nothing to check or filter: the query streams straight into the commit
        try:
            rows = ctx.session.reader(sql)
        except EngineSqlError:  # defining the view below says on which line, or works
            pass
        else:
            return write_rows(ctx.lake, _table_request(ctx, table, STEP_VIEW), rows)
    try:
        ctx.session.define(STEP_VIEW, sql)
    except EngineSqlError as exc:
        raise _sql_failed(table, exc) from None
    return _write_table(ctx, table, STEP_VIEW)


def _sql_by_workers(ctx: StepContext, table: Table, sql: str) -> Materialization:
    """An engine whose workers write the result (Spark): its files, committed by the lake
    as the table's next version. What only DuckDB does yet is refused before it runs."""
    import uuid

    from gristmill.execution.engines.dialect import Untranslatable
    from gristmill.execution.writer import commit_files, write_by_workers

    try:
        if ctx.partitions or table.contract.duckdb_finish():
            return _finished_on_duckdb(ctx, table, sql)
        folder = ctx.lake.files_folder(table.name, f"{ctx.template.run_id}-{uuid.uuid4().hex[:8]}")
        if table.contract.is_empty:
            ctx.session.write_files(sql, folder)
            return commit_files(ctx.lake, _table_request(ctx, table, STEP_VIEW), folder)
        ctx.session.define(STEP_VIEW, sql)
        assert ctx.duckdb is not None, "the runner hands every step its DuckDB"
        return write_by_workers(
            ctx.session, ctx.duckdb(), ctx.lake, _table_request(ctx, table, STEP_VIEW), folder
        )
    except Untranslatable as exc:
        raise _untranslatable(table, exc) from None
    except EngineSqlError as exc:
        raise _sql_failed(table, exc) from None


def _finished_on_duckdb(ctx: StepContext, table: Table, sql: str) -> Materialization:
    """Spark computes the step's rows and its executors write them to a scratch folder;
    DuckDB types (``columns=``), checks, quarantines and writes them as a DuckDB step
    would, replacing just the partitions being built. The rows pass through this process
    a batch at a time, as any DuckDB step's do."""
    assert ctx.duckdb is not None, "the runner hands every step its DuckDB"
    with ctx.lake.scratch("rows") as scratch:
        folder = Path(scratch) / "rows"
        ctx.session.write_files(sql, folder)
        files = sorted(str(f) for f in folder.glob("*.parquet"))
        with ctx.duckdb().session() as local:
            local.register_parquet(STEP_VIEW, files)
            finishing = replace(ctx, session=local, engine_scans_parquet=True)
            return _write_table(finishing, table, STEP_VIEW)


def _untranslatable(table: Table, exc: Any) -> StepFailed:
    first = exc.refusals[0]
    line = table.file_line(first.line)
    more = (
        f" ({len(exc.refusals) - 1} more: "
        + ", ".join(f"{r.construct} line {table.file_line(r.line)}" for r in exc.refusals[1:])
        + ")"
        if len(exc.refusals) > 1
        else ""
    )
    return StepFailed(
        f"{table.name}: {first.construct} has no verified mapping to {exc.target}{more}",
        location=Location(table.sql_path or table.location.path, line),
        hint=first.hint,
    )


def _sql_failed(table: Table, exc: EngineSqlError) -> StepFailed:
    line = table.file_line(exc.line)
    return StepFailed(
        f"{table.name}: {exc.message}",
        location=Location(table.sql_path or table.location.path, line),
        hint="fix the SQL; `gristmill run +" + table.name + "` reruns it with its inputs",
    )


def _table_request(
    ctx: StepContext,
    table: Table,
    view: str,
    *,
    mode: WriteMode = WriteMode.OVERWRITE,
    predicate: str | None = None,
    previous_rows: int = 0,
) -> WriteRequest:
    return WriteRequest(
        table=table.name,
        relation=view,
        contract=table.contract,
        mode=mode,
        template=ctx.template,
        predicate=predicate,
        previous_rows=previous_rows,
    )


def _python(ctx: StepContext, table: Table) -> Materialization:
    assert table.function is not None
    _require_memory(ctx, table)
    hints = _hints(table.function)
    args = {
        name: _convert(ctx.lake.read(name, version), hints.get(name))
        for name, version in ctx.inputs.items()
    }
    if ctx.partitions and "partition" in inspect.signature(table.function).parameters:
        args["partition"] = PartitionRange.of(ctx.partitions)
    try:
        result = table.function(**args, **dict(table.params))
    except Exception as exc:  # the user's code failed: report where, keep the traceback
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename) == table.location.path
        ]
        line = frames[-1].lineno if frames else table.location.line
        if isinstance(exc, GristmillError):  # gm.TransientError and kin keep their kind
            exc.location = exc.location or Location(table.location.path, line)
            raise
        failed = StepFailed(
            f"{table.name}: {type(exc).__name__}: {exc}",
            location=Location(table.location.path, line),
        )
        failed.transient = is_transient(exc)
        raise failed from exc
    ctx.session.register("__gm_result", _to_arrow(table, result))
    return _write_table(ctx, table, "__gm_result")


READ_PEAK = 1.5
"""What reading inputs into Arrow takes at its peak, per decoded byte (measured: 1.3x for
a 800 MB table; the rest is room for the step's own work)."""


def _require_memory(ctx: StepContext, table: Table) -> None:
    """A Python step gets its inputs whole, in this process: refuse, before reading any,
    inputs that cannot fit (reading them needs more than what is left)."""
    from gristmill.execution.engines.choice import size_text
    from gristmill.execution.memory import available_bytes

    sizes = {n: ctx.lake.decoded_bytes(n, v) for n, v in ctx.inputs.items()}
    need = sum(sizes.values())
    free, limit = available_bytes()
    if need * READ_PEAK <= free:
        return
    biggest = ", ".join(
        f"{n} {size_text(b)}" for n, b in sorted(sizes.items(), key=lambda i: -i[1])[:3]
    )
    raise StepFailed(
        f"{table.name}: a Python step gets its inputs in memory, and they take at least "
        f"{size_text(need)} decoded ({biggest}); reading them needs about "
        f"{size_text(need * READ_PEAK)}, more than the {size_text(free)} {limit}",
        location=table.location,
        hint="write it as a SQL step (which runs on Spark past auto_threshold), or run it "
        "where more memory is free",
    )


def _write_table(ctx: StepContext, table: Table, view: str) -> Materialization:
    # No row numbering here: a query's output has no order, and numbering it would
    # push the whole result through one thread.
    if not table.contract.is_empty:
        _check_declared(ctx, table, view)
    predicate = None
    outside = 0
    mode = WriteMode.OVERWRITE
    if ctx.partitions:
        view, predicate = _keep_partitions(ctx, table, view)
        if _holds_none_of(ctx, table):
            # nothing to replace (a new day): an append, which costs a Delta commit no
            # matter how many files the table has; a predicate write scans their stats
            mode, predicate = WriteMode.APPEND, None
            latest = ctx.lake.latest_version(table.name)
            outside = 0 if latest is None else ctx.lake.count(table.name, latest)
        elif table.contract.row_count is not None:  # bounds the table, not one batch
            outside = _rows_outside(ctx, table, predicate)
    return write(
        ctx.session,
        ctx.lake,
        _table_request(ctx, table, view, mode=mode, predicate=predicate, previous_rows=outside),
    )


def _holds_none_of(ctx: StepContext, table: Table) -> bool:
    """Whether no file of the table may hold rows of the partitions being built (by the
    log's statistics of the partition column; unknown statistics: it may)."""
    from gristmill.planning.partitions import overlaps

    partitioning = table.partitions
    assert partitioning is not None
    ranges = ctx.lake.column_ranges(table.name, partitioning.column)
    if ranges is None:
        return False
    for part in ctx.partitions:
        lo, hi = partitioning.value_range(part)
        if any(overlaps(a, b, lo, hi, partitioning) for a, b in ranges):
            return False
    return True


def _rows_outside(ctx: StepContext, table: Table, predicate: str) -> int:
    """Rows of the table's latest version that the partition write keeps."""
    latest = ctx.lake.latest_version(table.name)
    if latest is None:
        return 0
    register_input(ctx, table.name, latest, alias=EXISTING)
    ((count,),) = ctx.session.rows(f'SELECT count(*) FROM "{EXISTING}" WHERE NOT ({predicate})')
    return int(count)


TIME_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS")


def _keep_partitions(ctx: StepContext, table: Table, view: str) -> tuple[str, str]:
    """The step's rows inside the partitions being built, and the predicate that replaces
    just those partitions in the table."""
    partitioning = table.partitions
    assert partitioning is not None
    types = dict(ctx.session.columns(view))
    column = partitioning.column
    if column not in types:
        raise StepFailed(
            f"{table.name}: the partition column {column!r} is not among the step's columns",
            location=table.location,
            hint=f"the step produces: {', '.join(sorted(types))}",
        )
    kind = str(types[column]).upper()
    if partitioning.granularity != "static" and kind not in TIME_TYPES:
        raise StepFailed(
            f"{table.name}: the partition column {column!r} is {kind}, not a date or a timestamp",
            location=table.location,
            hint=f"cast it in the step (CAST({column} AS DATE)) or use gm.static(...)",
        )
    predicate = partitioning.sql_filter(ctx.partitions, kind)
    ctx.session.define(PARTITION_VIEW, f'SELECT * FROM "{view}" WHERE {predicate}')
    return PARTITION_VIEW, predicate


def _check_declared(ctx: StepContext, table: Table, view: str) -> None:
    produced = {c for c, _ in ctx.session.columns(view)}
    needed = set(table.contract.columns) | {
        c for check in table.contract.checks for c in check.columns
    }
    missing = sorted(needed - produced)
    if missing:
        raise StepFailed(
            f"{table.name}: the contract names column(s) {', '.join(missing)} "
            "that the step does not produce",
            location=table.location,
            hint=f"the step produces: {', '.join(sorted(produced))}",
        )


def _hints(function: Any) -> dict[str, Any]:
    try:
        return get_type_hints(function)
    except (NameError, TypeError):  # unresolvable annotations: hand over Arrow
        return {}


def _convert(data: pa.Table, hint: Any) -> Any:
    module = getattr(hint, "__module__", "") or ""
    if module.startswith("polars"):
        try:
            import polars as pl
        except ModuleNotFoundError:
            raise MissingExtraError("polars", "polars") from None
        return pl.from_arrow(data)
    if module.startswith("pandas"):
        return data.to_pandas()
    return data


def _to_arrow(table: Table, result: Any) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatchReader):
        return result.read_all()
    module = type(result).__module__
    if module.startswith("polars"):
        return result.to_arrow()
    if module.startswith("pandas"):
        return pa.Table.from_pandas(result, preserve_index=False)
    raise StepFailed(
        f"{table.name}: the function returned {type(result).__name__}",
        location=table.location,
        hint="return a pyarrow.Table, a polars DataFrame or a pandas DataFrame",
    )
