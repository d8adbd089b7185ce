"""Writing one step's rows: apply the contract, quarantine failures, commit a version.

Order matters for crash safety: quarantined rows are written first, tagged with the
version the table is about to get; the table commit comes last and is the moment the
step's result becomes visible. A rerun after a crash replaces orphaned quarantine rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill import failpoints
from gristmill.definitions.contracts import ORDER_COLUMN, Contract
from gristmill.errors import ContractViolation
from gristmill.execution.checks import (
    FAILURES,
    FILE_COLUMN,
    checked_query,
    good_rows_sql,
    quarantine_sql,
)
from gristmill.execution.engines import Engine, Session
from gristmill.planning import WriteMode
from gristmill.storage.catalog import IngestedFile, Materialization
from gristmill.storage.lake import Lake

CHECKED = "__gm_checked"


@dataclass
class WriteRequest:
    """What to write: a view in the session, its contract and how to commit it."""

    table: str
    relation: str
    contract: Contract
    mode: WriteMode
    template: Materialization
    """Everything about the materialization except version, rows and counts."""
    keep_only_declared: bool = False
    existing: str | None = None
    previous_rows: int = 0
    files: tuple[IngestedFile, ...] = field(default_factory=tuple)
    predicate: str | None = None
    """Replace only the rows matching this (a partition range); every row written must."""
    merge_keys: tuple[str, ...] = ()
    """For ``WriteMode.MERGE``: the key rows are upserted by."""
    delete_flag: str | None = None
    """For ``WriteMode.MERGE``: a column that, when set, deletes the row with its key."""
    transactions: dict[str, int] = field(default_factory=dict)
    """Delta app transactions committed with the rows (a source's extraction number)."""
    no_stats: tuple[str, ...] = ()
    """Columns kept out of the Delta log's statistics (personal data)."""


def write(session: Session, lake: Lake, request: WriteRequest) -> Materialization:
    if request.no_stats:  # before any version is numbered (quarantine rows carry it)
        columns = [c for c, _ in session.columns(request.relation) if not c.startswith("__gm")]
        lake.keep_out_of_stats(request.table, columns, request.no_stats)
    if request.contract.is_empty and not request.files:
        return _commit(lake, request, session.reader(f'SELECT * FROM "{request.relation}"'), {})
    columns = [c for c, _ in session.columns(request.relation)]
    query = checked_query(
        request.relation,
        columns,
        request.contract,
        keep_only_declared=request.keep_only_declared,
        existing=request.existing,
    )
    session.materialize(CHECKED, query.sql)
    ((total, bad),) = session.rows(
        f'SELECT count(*), count(*) FILTER (WHERE len("{FAILURES}") > 0) FROM "{CHECKED}"'
    )
    counts = dict(
        session.rows(
            f'SELECT f, count(*) FROM (SELECT unnest("{FAILURES}") AS f FROM "{CHECKED}") '
            "GROUP BY f ORDER BY f"
        )
    )
    _enforce_share(request, total, bad, counts)
    _enforce_row_count(request, request.previous_rows + total - bad)
    files = _file_counts(session, request, columns)
    if bad:
        latest = lake.latest_version(request.table)
        next_version = 0 if latest is None else latest + 1
        _write_quarantine(
            session,
            lake,
            request,
            query.raw_columns,
            next_version,
            has_file=FILE_COLUMN in columns,
            has_order=ORDER_COLUMN in columns,
        )
        failpoints.hit("after_quarantine", request.table)
    good = session.reader(good_rows_sql(CHECKED, query.output_columns))
    result = _commit(lake, replace(request, files=files), good, counts, quarantined=bad)
    session.rows(f'DROP TABLE IF EXISTS "{CHECKED}"')
    return result


def write_rows(lake: Lake, request: WriteRequest, rows: pa.RecordBatchReader) -> Materialization:
    """Commit rows that need no checks (a request without a contract or files)."""
    assert request.contract.is_empty and not request.files, request.table
    return _commit(lake, request, rows, {})


def write_by_workers(
    session: Session, duckdb: Engine, lake: Lake, request: WriteRequest, folder: Path
) -> Materialization:
    """A step whose engine's workers write its rows (Spark), with its checks.

    The checked rows stay in the engine. The quarantined ones — at most
    ``max_quarantine_share`` of them — are written by the workers to a local scratch folder,
    counted there and put into the quarantine table through ``duckdb``, so their values are
    text as DuckDB prints them (the same quarantine as a DuckDB step's). Only then are the
    good rows written into the table's folder and committed, with the counts."""
    assert request.contract.duckdb_finish() is None and not request.files, request.table
    columns = [c for c, _ in session.columns(request.relation)]
    query = checked_query(request.relation, columns, request.contract, keep_only_declared=False)
    session.materialize(CHECKED, query.sql)
    ((total,),) = session.rows(f'SELECT count(*) FROM "{CHECKED}"')
    with lake.scratch("quarantine") as scratch:
        bad_rows = Path(scratch) / "rows"
        session.write_files(f'SELECT * FROM "{CHECKED}" WHERE len("{FAILURES}") > 0', bad_rows)
        files = sorted(str(f) for f in bad_rows.glob("*.parquet"))
        with duckdb.session() as local:
            bad, counts = 0, {}
            if files:
                local.register_parquet(CHECKED, files)
                ((bad,),) = local.rows(f'SELECT count(*) FROM "{CHECKED}"')
                counts = dict(
                    local.rows(
                        f'SELECT f, count(*) FROM (SELECT unnest("{FAILURES}") AS f '
                        f'FROM "{CHECKED}") GROUP BY f ORDER BY f'
                    )
                )
            _enforce_share(request, total, bad, counts)
            _enforce_row_count(request, request.previous_rows + total - bad)
            if bad:
                latest = lake.latest_version(request.table)
                next_version = 0 if latest is None else latest + 1
                _write_quarantine(
                    local, lake, request, query.raw_columns, next_version,
                    has_file=False, has_order=False,
                )  # fmt: skip
                failpoints.hit("after_quarantine", request.table)
    session.write_files(good_rows_sql(CHECKED, query.output_columns), folder)
    return commit_files(lake, request, folder, counts=counts, quarantined=bad)


def commit_files(
    lake: Lake,
    request: WriteRequest,
    folder: Path,
    *,
    counts: dict[str, int] | None = None,
    quarantined: int = 0,
) -> Materialization:
    """Commit the files an engine's workers wrote below ``folder`` (checked already, by
    ``write_by_workers``) as the table's next version."""
    assert request.mode is WriteMode.OVERWRITE, request.table
    record = replace(
        request.template,
        mode=request.mode.value,
        quarantined=quarantined,
        quarantine_counts=counts or {},
        version=-1,
    )
    written = lake.commit_files(
        request.table, folder, mode="overwrite", record=record.to_record(),
        transactions=request.transactions,
    )  # fmt: skip
    return replace(
        record,
        version=written.version,
        rows=written.rows,
        rows_added=written.rows,
        schema=[{"name": f.name, "type": str(f.type)} for f in written.schema],
    )


def _commit(
    lake: Lake,
    request: WriteRequest,
    data: pa.RecordBatchReader,
    counts: dict[str, int],
    quarantined: int = 0,
) -> Materialization:
    record = replace(
        request.template,
        mode=request.mode.value,
        files=request.files,
        quarantined=quarantined,
        quarantine_counts=counts,
        version=-1,
    )
    if request.mode is WriteMode.MERGE:
        written = lake.merge(
            request.table,
            data,
            keys=request.merge_keys,
            record=record.to_record(),
            delete_flag=request.delete_flag,
            transactions=request.transactions,
        )
    else:
        written = lake.write(
            request.table,
            data,
            mode=request.mode.value,  # type: ignore[arg-type]
            record=record.to_record(),
            predicate=request.predicate,
            transactions=request.transactions,
            no_stats=request.no_stats,
            merged=bool(request.merge_keys),  # a table kept by merges: smaller files
        )
    appended = request.mode is WriteMode.APPEND
    if request.predicate is not None or request.mode is WriteMode.MERGE:
        rows = lake.count(request.table, written.version)  # the table holds more
    else:
        rows = written.rows + (request.previous_rows if appended else 0)
    return replace(
        record,
        version=written.version,
        rows=rows,
        rows_added=written.rows,
        schema=[{"name": f.name, "type": str(f.type)} for f in written.schema],
    )


def _enforce_share(request: WriteRequest, total: int, bad: int, counts: dict[str, int]) -> None:
    limit = request.contract.max_quarantine_share
    if total and bad / total > limit:
        detail = ", ".join(f"{check}: {n}" for check, n in counts.items())
        raise ContractViolation(
            f"{request.table}: {bad} of {total} rows ({bad / total:.1%}) broke the contract, "
            f"more than the limit of {limit:.0%} ({detail}); nothing was written",
            hint="fix the input, or raise max_quarantine_share if this share is expected",
        )


def _enforce_row_count(request: WriteRequest, rows: int) -> None:
    bounds = request.contract.row_count
    if bounds is not None and bounds.violated_by(rows):
        raise ContractViolation(
            f"{request.table}: {bounds.name} failed with {rows} rows; nothing was written",
            hint="check the input files or adjust row_count=",
        )


def _file_counts(
    session: Session, request: WriteRequest, columns: list[str]
) -> tuple[IngestedFile, ...]:
    if not request.files or FILE_COLUMN not in columns:
        return request.files
    per_file: dict[str, tuple[Any, Any]] = {
        name: (good, bad)
        for name, good, bad in session.rows(
            f'SELECT "{FILE_COLUMN}", count(*) FILTER (WHERE len("{FAILURES}") = 0), '
            f'count(*) FILTER (WHERE len("{FAILURES}") > 0) FROM "{CHECKED}" GROUP BY 1'
        )
    }
    return tuple(
        replace(
            f,
            rows=int(per_file.get(f.path, (0, 0))[0]),
            quarantined=int(per_file.get(f.path, (0, 0))[1]),
        )
        for f in request.files
    )


def _write_quarantine(
    session: Session,
    lake: Lake,
    request: WriteRequest,
    raw: tuple[str, ...],
    version: int,
    *,
    has_file: bool,
    has_order: bool,
) -> None:
    name = lake.quarantine_name(request.table)
    for commit in lake.commits(name, after=(lake.latest_version(name) or 0) - 1):
        if commit.record and commit.record.get("table_version") == version:
            lake.delete(name, f"_table_version = {version}")
    sql = quarantine_sql(
        CHECKED,
        raw,
        list(request.contract.columns),
        request.template.run_id,
        version,
        has_file=has_file,
        has_order=has_order,
    )
    lake.write(
        name,
        session.reader(sql),
        mode="append",
        record={
            "table": request.table,
            "table_version": version,
            "run_id": request.template.run_id,
        },
        merge_schema=True,
    )
