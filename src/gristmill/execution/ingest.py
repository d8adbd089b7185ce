"""Reading source files into the engine as one relation of raw values.

Every file is checked for the declared columns first, so a file with a missing column or
unreadable bytes fails the step with the file's name instead of silently padding nulls.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlglot import exp

from gristmill.definitions.contracts import ORDER_COLUMN
from gristmill.definitions.sources import FileFormat, FileSource
from gristmill.errors import SourceReadError
from gristmill.execution.checks import FILE_COLUMN
from gristmill.execution.engines import EngineSqlError, Session

DIALECT = "duckdb"


def _reader_call(source: FileSource, files: Sequence[str], *, probe: bool) -> exp.Expression:
    file_list = exp.Array(expressions=[exp.Literal.string(f) for f in files])
    # a folder such as env=prod in the project's path is no column (a source opts in with
    # options={"hive_partitioning": True})
    options: dict[str, Any] = {"hive_partitioning": False}
    if not probe:
        options["filename"] = True
    if source.format is FileFormat.CSV:
        function = "read_csv"
        options |= {"header": True, "all_varchar": True}
    elif source.format is FileFormat.PARQUET:
        function = "read_parquet"
        options["can_have_nan"] = True  # whatever the file's min/max say (duckdb#25521)
    else:
        function = "read_json"
        options |= {
            "format": "newline_delimited",
            "columns": {c: "VARCHAR" for c in source.contract.columns},
        }
    if len(files) > 1:
        options["union_by_name"] = True
    options |= dict(source.options)
    args: list[exp.Expression] = [file_list]
    for key, value in options.items():
        args.append(exp.PropertyEQ(this=exp.to_identifier(key), expression=_value(value)))
    return exp.Anonymous(this=function, expressions=args)


def _value(value: Any) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, dict):
        return exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.Literal.string(k), expression=_value(v))
                for k, v in value.items()
            ]
        )
    return exp.Literal.string(str(value))


def check_files(session: Session, source: FileSource, root: Path, files: Sequence[str]) -> None:
    """Fail with the file's name if it cannot be read or lacks a declared column."""
    declared = list(source.contract.columns)
    for name in files:
        call = _reader_call(source, [str(root / name)], probe=True)
        query = exp.select(exp.Star()).from_(call).limit(0).sql(dialect=DIALECT)
        try:
            session.define("__gm_probe", query)
            present = {c for c, _ in session.columns("__gm_probe")}
        except EngineSqlError as exc:
            raise SourceReadError(
                f"cannot read {name} as {source.format.value}: {exc.message}",
                hint="fix or remove the file, or set format=/options= on the source",
            ) from None
        missing = [c for c in declared if c not in present]
        if missing and source.format is FileFormat.CSV:
            _require_even_rows(root / name, name, source)
        if missing:
            raise SourceReadError(
                f"{name} lacks declared column(s) {', '.join(missing)}",
                hint=f"columns in the file: {', '.join(sorted(present)) or '(none)'}",
            )


DELIMITERS = (",", ";", "\t", "|")


def _require_even_rows(path: Path, name: str, source: FileSource) -> None:
    """Name the first row whose width differs from the header's.

    DuckDB's dialect sniffer gives up on a small file with one such row and reads every
    line as a single column, which would otherwise look like missing columns.
    """
    options = dict(source.options)
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
            delimiter = options.get("delim") or options.get("sep") or _delimiter(header, source)
            handle.seek(0)
            rows = csv.reader(handle, delimiter=delimiter, quotechar=options.get("quote", '"'))
            width = len(next(rows, []))
            for row in rows:
                if row and len(row) != width:
                    raise SourceReadError(
                        f"{name} line {rows.line_num} has {len(row)} columns, the header has "
                        f"{width} (delimiter {delimiter!r})",
                        hint="fix that line (a value with an unquoted delimiter, or a missing "
                        "one), or remove it from the file",
                    )
    except (OSError, csv.Error, TypeError):
        return  # not plain text (compressed, say): keep DuckDB's account


def _delimiter(header: str, source: FileSource) -> str:
    """The delimiter that splits the header into the most declared columns."""
    declared = set(source.contract.columns)
    return max(
        DELIMITERS, key=lambda d: len(declared & {c.strip().strip('"') for c in header.split(d)})
    )


def raw_relation_sql(source: FileSource, root: Path, files: Sequence[str]) -> str:
    """All rows of ``files`` with their file and a stable row order."""
    call = _reader_call(source, [str(root / f) for f in files], probe=False)
    prefix = len(str(root)) + 1
    relative = exp.Substring(this=exp.column("filename"), start=exp.Literal.number(prefix + 1))
    columns = [exp.column(exp.to_identifier(c, quoted=True)) for c in source.contract.columns]
    return (
        exp.select(
            *columns,
            exp.alias_(relative, FILE_COLUMN, quoted=True),
            exp.alias_(exp.Window(this=exp.RowNumber()), ORDER_COLUMN, quoted=True),
        )
        .from_(call)
        .sql(dialect=DIALECT)
    )
