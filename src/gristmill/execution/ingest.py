"""Reading source files into the engine as one relation of raw values.

Every file is checked for the declared columns first, so a file with a missing column or
unreadable bytes fails the step with the file's name instead of silently padding nulls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlglot import exp

from gristmill.definitions.contracts import ORDER_COLUMN
from gristmill.definitions.objects import FileFormat, Source
from gristmill.errors import SourceReadError
from gristmill.execution.checks import FILE_COLUMN
from gristmill.execution.engines import EngineSqlError, Session

DIALECT = "duckdb"


def _reader_call(source: Source, files: Sequence[str], *, probe: bool) -> exp.Expression:
    file_list = exp.Array(expressions=[exp.Literal.string(f) for f in files])
    options: dict[str, Any] = {"filename": True} if not probe else {}
    if source.format is FileFormat.CSV:
        function = "read_csv"
        options |= {"header": True, "all_varchar": True}
    elif source.format is FileFormat.PARQUET:
        function = "read_parquet"
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


def check_files(session: Session, source: Source, root: Path, files: Sequence[str]) -> None:
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
        if missing:
            raise SourceReadError(
                f"{name} lacks declared column(s) {', '.join(missing)}",
                hint=f"columns in the file: {', '.join(sorted(present)) or '(none)'}",
            )


def raw_relation_sql(source: Source, root: Path, files: Sequence[str]) -> str:
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
