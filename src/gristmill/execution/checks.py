"""Applying a contract inside the engine: cast, check, split good rows from quarantine.

The checked relation keeps every input row once, with the typed columns, the raw values
(as text) and ``__gm_failures``: the names of the checks the row broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from gristmill.definitions.contracts import (
    ORDER_COLUMN,
    Contract,
    NotNull,
    RowCheck,
    Unique,
    col,
    raw_column,
)

FAILURES = "__gm_failures"
FILE_COLUMN = "__gm_file"
DELETED_COLUMN = "__gm_deleted"
"""Set by a source on a row that deletes its key (a change read from a database's log):
no check applies to it (it carries the key alone), and it goes to the merge as it is."""
ERROR_COLUMN = "__gm_error"
"""Set by a source on a row it could not read at all (a message that is not JSON): the
row's only failure, whatever its (empty) columns would break."""
DIALECT = "duckdb"


@dataclass(frozen=True)
class CheckedQuery:
    sql: str
    output_columns: tuple[str, ...]
    """Columns of the table itself, in order."""
    raw_columns: tuple[str, ...]
    """Columns whose original values go to quarantine."""


def checked_query(
    relation: str,
    available: Sequence[str],
    contract: Contract,
    *,
    keep_only_declared: bool,
    existing: str | None = None,
) -> CheckedQuery:
    """SELECT over ``relation`` that types the declared columns and lists failed checks.

    Args:
        relation: a view holding the step's rows, for sources with ``ORDER_COLUMN``
            and ``FILE_COLUMN``.
        available: the view's columns, in order.
        keep_only_declared: sources keep only declared columns; SQL steps keep all.
        existing: a view of the table's current rows; ``unique`` then also fails rows
            whose key is already in the table (incremental appends).
    """
    internal = {ORDER_COLUMN, FILE_COLUMN, ERROR_COLUMN, DELETED_COLUMN}
    data_columns = [c for c in available if c not in internal]
    declared = contract.columns
    output = list(declared) if keep_only_declared else data_columns
    if DELETED_COLUMN in available:
        output.append(DELETED_COLUMN)
    typed = exp.select(
        *(_typed(c, declared.get(c)) for c in output),
        *(exp.alias_(col(c), raw_column(c), quoted=True) for c in declared),
        *(col(c) for c in available if c in internal and c != DELETED_COLUMN),
    ).from_(exp.to_identifier(relation, quoted=True))
    order = (ORDER_COLUMN,) if ORDER_COLUMN in available else tuple(output)
    failures = [_failure_case(check, existing, declared, order) for check in contract.row_checks()]
    failure_list: exp.Expression = exp.Anonymous(
        this="list_filter",
        expressions=[
            exp.Array(expressions=failures) if failures else exp.Array(expressions=[]),
            exp.Lambda(
                this=exp.column("x").is_(exp.null()).not_(), expressions=[exp.to_identifier("x")]
            ),
        ],
    )
    if DELETED_COLUMN in available:
        failure_list = exp.If(
            this=col(DELETED_COLUMN).is_(exp.null()).not_(),
            true=exp.cast(exp.Array(expressions=[]), "VARCHAR[]"),
            false=failure_list,
        )
    if ERROR_COLUMN in available:
        unreadable = exp.Array(expressions=[col(ERROR_COLUMN)])
        failure_list = exp.If(
            this=col(ERROR_COLUMN).is_(exp.null()).not_(), true=unreadable, false=failure_list
        )
    outer = exp.select(exp.Star(), exp.alias_(failure_list, FAILURES, quoted=True)).from_(
        typed.subquery("typed")
    )
    return CheckedQuery(
        sql=outer.sql(dialect=DIALECT),
        output_columns=tuple(output),
        raw_columns=tuple(data_columns),
    )


def _typed(column: str, type_: str | None) -> exp.Expr:
    if type_ is None:
        return col(column)
    return exp.alias_(
        exp.TryCast(this=col(column), to=exp.DataType.build(type_, dialect=DIALECT)),
        column,
        quoted=True,
    )


def _failure_case(
    check: RowCheck, existing: str | None, declared: dict[str, str], order: tuple[str, ...]
) -> exp.Expression:
    condition = check.failure(order) if isinstance(check, Unique) else check.failure()
    if isinstance(check, NotNull) and check.column in declared:
        # A value that is present but does not cast is a type failure, not a missing value.
        condition = col(raw_column(check.column)).is_(exp.null())
    if isinstance(check, Unique) and existing is not None:
        condition = exp.or_(condition, _exists_in(check.keys, existing))
    return exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.string(check.name))])


def _exists_in(keys: Sequence[str], existing: str) -> exp.Expression:
    match = exp.and_(
        *(
            exp.EQ(
                this=exp.column(exp.to_identifier(k, quoted=True), table="e"),
                expression=exp.column(exp.to_identifier(k, quoted=True), table="typed"),
            )
            for k in keys
        )
    )
    inner = (
        exp.select(exp.Literal.number(1))
        .from_(
            exp.Table(
                this=exp.to_identifier(existing, quoted=True),
                alias=exp.TableAlias(this=exp.to_identifier("e")),
            )
        )
        .where(match)
    )
    return exp.Exists(this=inner)


def good_rows_sql(checked: str, columns: Sequence[str]) -> str:
    return (
        exp.select(*(col(c) for c in columns))
        .from_(exp.to_identifier(checked, quoted=True))
        .where(_len_failures().eq(0))
        .sql(dialect=DIALECT)
    )


def quarantine_sql(
    checked: str,
    raw_columns: Sequence[str],
    declared: Sequence[str],
    run_id: str,
    version: int,
    *,
    has_file: bool,
    has_order: bool,
) -> str:
    """Quarantined rows: original values as text, the failed checks, file, row, run, version."""
    values = [
        exp.alias_(
            exp.cast(col(raw_column(c)) if c in declared else col(c), "VARCHAR"), c, quoted=True
        )
        for c in raw_columns
    ]
    file_column = col(FILE_COLUMN) if has_file else exp.cast(exp.null(), "VARCHAR")
    return (
        exp.select(
            *values,
            exp.alias_(col(FAILURES), "_checks"),
            exp.alias_(file_column, "_file"),
            exp.alias_(col(ORDER_COLUMN) if has_order else exp.cast(exp.null(), "BIGINT"), "_row"),
            exp.alias_(exp.Literal.string(run_id), "_run_id"),
            exp.alias_(exp.cast(exp.Literal.number(version), "BIGINT"), "_table_version"),
        )
        .from_(exp.to_identifier(checked, quoted=True))
        .where(_len_failures() > 0)
        .sql(dialect=DIALECT)
    )


def _len_failures() -> exp.Expression:
    return exp.ArraySize(this=col(FAILURES))
