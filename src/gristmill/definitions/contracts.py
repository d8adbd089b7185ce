"""Contracts: declared column types plus row checks and table checks.

A row check knows its own name (shown in quarantine and reports) and builds, as a
sqlglot expression, the condition that is TRUE when a row *fails*. Null values fail only
``not_null``; the other checks pass over them, as in dbt and Great Expectations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gristmill.errors import DefinitionError

if TYPE_CHECKING:  # sqlglot is only needed when checks run, not when a project loads
    from sqlglot import exp

ORDER_COLUMN = "__gm_order"
"""Input order of ingested rows (file, then row), added by the engine."""
RAW_PREFIX = "__gm_raw_"


def col(name: str) -> exp.Column:
    """A quoted column reference, safe for any column name."""
    from sqlglot import exp

    return exp.column(exp.to_identifier(name, quoted=True))


@dataclass(frozen=True)
class RowCheck:
    """A check over single rows; failing rows are quarantined."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    def failure(self) -> exp.Expr:
        """SQL condition that is TRUE when a row breaks this check."""

        raise NotImplementedError


@dataclass(frozen=True)
class NotNull(RowCheck):
    column: str

    @property
    def name(self) -> str:
        return f"not_null({self.column})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def failure(self) -> exp.Expr:
        from sqlglot import exp

        return col(self.column).is_(exp.null())


@dataclass(frozen=True)
class Unique(RowCheck):
    """Every value (or combination) occurs once; later duplicates are quarantined."""

    keys: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"unique({', '.join(self.keys)})"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys

    def failure(self, order_by: tuple[str, ...] = (ORDER_COLUMN,)) -> exp.Expr:
        """Later duplicates fail; the first per key in ``order_by`` order is kept.

        Ingestion orders by file and row (first occurrence wins). SQL and Python steps
        have no input order, so the engine orders by all their columns instead: the kept
        row is then a function of the data alone.
        """
        from sqlglot import exp

        window = exp.Window(
            this=exp.RowNumber(),
            partition_by=[col(k) for k in self.keys],
            order=exp.Order(expressions=[exp.Ordered(this=col(c)) for c in order_by]),
        )
        not_null = exp.and_(*(col(k).is_(exp.null()).not_() for k in self.keys))
        return exp.and_(not_null, exp.GT(this=window, expression=exp.Literal.number(1)))


@dataclass(frozen=True)
class Range(RowCheck):
    column: str
    min: float | int | None = None
    max: float | int | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise DefinitionError(f"range({self.column}) needs min, max or both")

    @property
    def name(self) -> str:
        lo = "" if self.min is None else f"{self.min} <= "
        hi = "" if self.max is None else f" <= {self.max}"
        return f"range({lo}{self.column}{hi})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def failure(self) -> exp.Expr:
        from sqlglot import exp

        parts: list[exp.Expr] = []
        if self.min is not None:
            parts.append(exp.LT(this=col(self.column), expression=_literal(self.min)))
        if self.max is not None:
            parts.append(exp.GT(this=col(self.column), expression=_literal(self.max)))
        return exp.or_(*parts)


@dataclass(frozen=True)
class AcceptedValues(RowCheck):
    column: str
    values: tuple[object, ...]

    @property
    def name(self) -> str:
        return f"accepted_values({self.column})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def failure(self) -> exp.Expr:
        from sqlglot import exp

        return exp.In(this=col(self.column), expressions=[_literal(v) for v in self.values]).not_()


@dataclass(frozen=True)
class Regex(RowCheck):
    column: str
    pattern: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise DefinitionError(
                f"regex({self.column}): invalid pattern {self.pattern!r}: {exc}"
            ) from None

    @property
    def name(self) -> str:
        return f"regex({self.column})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def failure(self) -> exp.Expr:
        from sqlglot import exp

        return exp.RegexpFullMatch(
            this=exp.cast(col(self.column), "VARCHAR"), expression=exp.Literal.string(self.pattern)
        ).not_()


@dataclass(frozen=True)
class TypeCheck(RowCheck):
    """A raw value is present but cannot be cast to the declared type."""

    column: str
    type: str

    @property
    def name(self) -> str:
        return f"type({self.column} {self.type})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def failure(self) -> exp.Expr:
        from sqlglot import exp

        raw = col(raw_column(self.column))
        return exp.and_(raw.is_(exp.null()).not_(), col(self.column).is_(exp.null()))


@dataclass(frozen=True)
class RowCount:
    """Bounds on the number of rows in the table after the step."""

    min: int | None = None
    max: int | None = None

    @property
    def name(self) -> str:
        return f"row_count({self.min or 0}..{'' if self.max is None else self.max})"

    def violated_by(self, rows: int) -> bool:
        return (self.min is not None and rows < self.min) or (
            self.max is not None and rows > self.max
        )


def raw_column(name: str) -> str:
    return f"{RAW_PREFIX}{name}"


def _literal(value: object) -> exp.Expr:
    from sqlglot import exp

    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


@dataclass(frozen=True)
class Contract:
    """What a table promises: column types, row checks, table checks, a quarantine limit."""

    columns: dict[str, str] = field(default_factory=dict)
    checks: tuple[RowCheck, ...] = ()
    row_count: RowCount | None = None
    max_quarantine_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_quarantine_share <= 1.0:
            raise DefinitionError(
                f"max_quarantine_share must be between 0 and 1, got {self.max_quarantine_share}"
            )

    @property
    def is_empty(self) -> bool:
        return not self.columns and not self.checks and self.row_count is None

    def duckdb_finish(self) -> str | None:
        """What of this contract DuckDB applies to a Spark step's rows (None: Spark applies
        all of it). Declared types are TRY_CASTs of text, which the engines read
        differently: Spark computes the rows, DuckDB types, checks and writes them."""
        if self.columns:
            return "declared column types (columns=)"
        return None

    def row_checks(self) -> tuple[RowCheck, ...]:
        typed = tuple(TypeCheck(c, t) for c, t in self.columns.items())
        return typed + self.checks

    def unknown_columns(self, available: Sequence[str]) -> list[str]:
        names = set(available)
        return sorted({c for check in self.checks for c in check.columns} - names)

    def describe(self) -> dict[str, object]:
        """Stable, JSON-friendly description (part of the step fingerprint)."""
        return {
            "columns": dict(sorted(self.columns.items())),
            "checks": [repr(check) for check in self.checks],
            "row_count": self.row_count.name if self.row_count else None,
            "max_quarantine_share": self.max_quarantine_share,
        }


# Public, readable constructors for project modules.
def not_null(*columns: str) -> tuple[RowCheck, ...]:
    return tuple(NotNull(c) for c in columns)


def unique(*keys: str) -> Unique:
    return Unique(tuple(keys))


def in_range(column: str, min: float | None = None, max: float | None = None) -> Range:  # noqa: A002
    return Range(column, min, max)


def accepted_values(column: str, values: Sequence[object]) -> AcceptedValues:
    return AcceptedValues(column, tuple(values))


def matches(column: str, pattern: str) -> Regex:
    return Regex(column, pattern)


def row_count(min: int | None = None, max: int | None = None) -> RowCount:  # noqa: A002
    return RowCount(min, max)


def flatten_checks(checks: Sequence[RowCheck | tuple[RowCheck, ...]]) -> tuple[RowCheck, ...]:
    out: list[RowCheck] = []
    for item in checks:
        if isinstance(item, tuple):
            out.extend(item)
        elif isinstance(item, RowCheck):
            out.append(item)
        else:
            raise DefinitionError(
                f"{item!r} is not a check",
                hint="use gm.not_null, gm.unique, gm.in_range, gm.accepted_values, gm.matches",
            )
    return tuple(out)
