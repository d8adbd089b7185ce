"""Steps are written in DuckDB's SQL; an engine with another dialect gets them translated,
or refused.

sqlglot transpiles most of DuckDB's SQL, but some of its output means something else on
the target. Measured on Spark 4.3: ``dayofweek`` off by one and ``isodow`` wrong,
``len``/``length`` of a list taken as a string's length, ``quantile_cont`` written as a
function Spark has only with WITHIN GROUP, ``epoch_ms`` of a timestamp read as
milliseconds, an empty ``generate_series``/``range`` counted backwards. Those constructs
are rewritten here, typed by the step's input schemas where the meaning depends on a type.
Every other node of a step must be a construct whose mapping the tests verified on both
engines (``VERIFIED``); anything else is refused before the step runs, naming the
construct, its line and what to write instead. Never a silently different result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp

if TYPE_CHECKING:
    from sqlglot.dialects.dialect import DialectType
    from sqlglot.expressions.datatypes import DType

SOURCE = "duckdb"
"""The dialect users write steps in."""


@dataclass(frozen=True)
class Refusal:
    construct: str
    """As the user wrote it, e.g. ``ASOF JOIN`` or ``my_udf()``."""
    line: int | None
    """1-based, within the step's SQL (None when no token of it carries a line)."""
    hint: str


class Untranslatable(Exception):
    """A step whose SQL cannot run on the target as it runs on DuckDB."""

    def __init__(self, target: str, refusals: list[Refusal]) -> None:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        super().__init__(f"{first.construct} has no verified mapping to {target}{more}")
        self.target = target
        self.refusals = refusals


Schema = Mapping[str, Mapping[str, str]]
"""Input name -> column -> DuckDB type: what a step reads, for typed rewrites."""


def translate(sql: str, target: str, schema: Schema) -> str:
    """``sql`` (DuckDB) as ``target`` runs it with the same result, or ``Untranslatable``."""
    if target == SOURCE:
        return sql
    rules = _RULES.get(target)
    if rules is None:
        raise ValueError(f"no translation to {target!r}")  # engines register theirs here
    tree = _typed(sql, target, schema)
    refusals: list[Refusal] = []
    # children before parents: a rewritten parent takes its rewritten children along
    for node in reversed(list(tree.walk(bfs=False))):
        refusal = _apply(node, rules)
        if refusal is not None:
            refusals.append(refusal)
    if refusals:
        refusals.sort(key=lambda r: (r.line or 0, r.construct))
        raise Untranslatable(target, refusals)
    return tree.sql(dialect=rules.dialect)


def _typed(sql: str, target: str, schema: Schema) -> exp.Expr:
    import sqlglot
    from sqlglot.errors import ParseError
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    try:
        statements = sqlglot.parse(sql, read=SOURCE)
    except ParseError as exc:
        line = exc.errors[0].get("line") if exc.errors else None
        hint = "the SQL must parse as DuckDB's: check it with `gristmill run` on DuckDB"
        raise Untranslatable(target, [Refusal("SQL that does not parse", line, hint)]) from None
    tree = statements[0] if len(statements) == 1 else None
    if tree is None:
        hint = "a step is one SELECT"
        raise Untranslatable(target, [Refusal(f"{len(statements)} statements", None, hint)])
    tables: dict[str, object] = {name: dict(columns) for name, columns in schema.items()}
    try:
        tree = qualify(tree, schema=tables, dialect=SOURCE, validate_qualify_columns=False)
    except Exception as exc:  # noqa: BLE001 - sqlglot's OptimizeError and kin, said as is
        hint = "name every column of the step's inputs as they are"
        raise Untranslatable(target, [Refusal(str(exc), None, hint)]) from None
    return annotate_types(tree, schema=tables, dialect=SOURCE)


# ---- the rules of one target ---------------------------------------------------------

Rewrite = Callable[[exp.Expr], "exp.Expr | Refusal"]


@dataclass(frozen=True)
class _Rules:
    dialect: DialectType
    verified: frozenset[type[exp.Expr]]
    """Node types whose sqlglot mapping the tests verified on both engines."""
    rewrites: Mapping[type[exp.Expr], Rewrite]
    types: frozenset[DType]
    """Types a CAST may name."""
    refused: Mapping[type[exp.Expr], str]
    """Node types refused with a specific hint."""


def _apply(node: exp.Expr, rules: _Rules) -> Refusal | None:
    kind = type(node)
    if kind in rules.refused:
        return Refusal(_shown(node), _line(node), rules.refused[kind])
    if isinstance(node, exp.Join) and node.args.get("method"):
        method = str(node.args["method"]).upper()
        return Refusal(f"{method} JOIN", _line(node), _JOIN_HINT)
    if isinstance(node, exp.DataType):
        if node.this in rules.types or isinstance(node.parent, exp.ColumnDef):
            return None
        return Refusal(f"type {node.sql(SOURCE)}", _line(node.parent or node), _TYPE_HINT)
    rewrite = rules.rewrites.get(kind)
    if rewrite is not None:
        replaced = rewrite(node)
        if isinstance(replaced, Refusal):
            return replaced
        if replaced is not node:
            node.replace(replaced)
        return None
    if kind in rules.verified:
        return None
    hint = (
        "it is not among the functions verified on this engine: compute it in a Python "
        "step, or pin the step to DuckDB"
    )
    return Refusal(_shown(node), _line(node), hint)


_JOIN_HINT = (
    "a point-in-time join belongs in gm.training_set (which runs on every engine); in a "
    "step, write it as a LEFT JOIN ... QUALIFY row_number() OVER (...) = 1"
)
_TYPE_HINT = "cast to BIGINT, INTEGER, DOUBLE, DECIMAL(p, s), VARCHAR, BOOLEAN, DATE or TIMESTAMP"


def _shown(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return f"{node.name}()"
    if isinstance(node, exp.Func):
        return f"{node.sql_name().lower()}()"
    return node.key.upper()


def _as_written(node: exp.Expr) -> str:
    """A node's SQL without the qualifiers and quotes qualification added."""
    import re

    def plain(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.Column):
            return exp.column(n.name, quoted=not re.fullmatch(r"[a-z_][a-z0-9_]*", n.name))
        return n

    return node.copy().transform(plain).sql(SOURCE)


def _line(node: exp.Expr) -> int | None:
    lines = [n.meta["line"] for n in node.walk() if "line" in n.meta]
    return min(lines) if lines else None


def _type_of(node: exp.Expr | None) -> exp.DataType | None:
    kind = node.type if node is not None else None
    if kind is None or kind.this in (exp.DataType.Type.UNKNOWN, exp.DataType.Type.NULL):
        return None
    return kind


# ---- Spark ---------------------------------------------------------------------------


def _weekday(value: exp.Expr) -> exp.Expr:
    """Spark's WEEKDAY: Monday 0 ... Sunday 6."""
    return exp.Anonymous(this="WEEKDAY", expressions=[value.copy()])


def _day_of_week(node: exp.Expr) -> exp.Expr:
    """DuckDB's dayofweek: Sunday 0 ... Saturday 6."""
    shifted = exp.Add(this=_weekday(node.this), expression=exp.Literal.number(1))
    return exp.Paren(this=exp.Mod(this=exp.Paren(this=shifted), expression=exp.Literal.number(7)))


def _iso_day_of_week(node: exp.Expr) -> exp.Expr:
    """DuckDB's isodow: Monday 1 ... Sunday 7."""
    return exp.Paren(this=exp.Add(this=_weekday(node.this), expression=exp.Literal.number(1)))


def _length(node: exp.Expr) -> exp.Expr | Refusal:
    """``len``/``length``: of a list its number of elements, of text its characters."""
    kind = _type_of(node.this)
    if kind is not None and kind.is_type(*exp.DataType.TEXT_TYPES):
        return node
    if kind is not None and kind.this is exp.DataType.Type.ARRAY:
        return exp.ArraySize(this=node.this.copy())
    return Refusal(
        _as_written(node),
        _line(node),
        "length of a value whose type is not known here: write length(CAST(x AS VARCHAR)) "
        "for text or array_length(x) for a list",
    )


def _epoch_ms(node: exp.Expr) -> exp.Expr | Refusal:
    """``epoch_ms(timestamp)``: its milliseconds; ``epoch_ms(number)``: the timestamp."""
    scale = node.args.get("scale")
    millis = scale is not None and scale.name == str(exp.UnixToTime.MILLIS.name)
    if not millis:  # to_timestamp(seconds): a TIMESTAMPTZ, formatted by Spark's zone
        return Refusal(
            f"to_timestamp({_as_written(node.this)})",
            _line(node),
            "write epoch_ms(seconds * 1000), a TIMESTAMP (UTC)",
        )
    kind = _type_of(node.this)
    if kind is not None and kind.is_type(*exp.DataType.TEMPORAL_TYPES):
        return exp.Anonymous(this="UNIX_MILLIS", expressions=[node.this.copy()])
    if kind is not None and kind.is_type(*exp.DataType.INTEGER_TYPES):
        return exp.Anonymous(this="TIMESTAMP_MILLIS", expressions=[node.this.copy()])
    return Refusal(
        _as_written(node),
        _line(node),
        "epoch_ms of a value whose type is not known here: cast it to TIMESTAMP or BIGINT",
    )


def _date_shift(node: exp.Expr) -> exp.Expr:
    """A DATE plus or minus an INTERVAL: a TIMESTAMP on DuckDB, a DATE on Spark."""
    for side in ("this", "expression"):
        operand, other = node.args[side], node.args["expression" if side == "this" else "this"]
        kind = _type_of(operand)
        if isinstance(other, exp.Interval) and kind is not None and kind.is_type("date"):
            operand.replace(exp.cast(operand.copy(), exp.DataType.Type.TIMESTAMPNTZ))
    return node


def _quantile(node: exp.Expr) -> exp.Expr:
    """DuckDB's quantile_cont(x, q) interpolates like Spark's PERCENTILE(x, q)."""
    return exp.Anonymous(this="PERCENTILE", expressions=[node.this.copy(), node.expression.copy()])


def _series(node: exp.Expr) -> exp.Expr | Refusal:
    """generate_series(a, b) (b included) and range(a, b) (b excluded) with the default
    step: empty when a is past b, where Spark's SEQUENCE would count backwards."""
    if node.args.get("step") is not None:
        return Refusal(
            _as_written(node),
            _line(node),
            "a series with a step has no verified mapping: generate it without one",
        )
    start, end = node.args["start"], node.args["end"]
    if node.args.get("is_end_exclusive"):
        end = exp.Sub(this=exp.Paren(this=end.copy()), expression=exp.Literal.number(1))
    whole = exp.Anonymous(this="SEQUENCE", expressions=[start.copy(), end.copy()])
    empty = exp.Anonymous(
        this="SLICE", expressions=[whole.copy(), exp.Literal.number(1), exp.Literal.number(0)]
    )
    guarded = exp.If(
        this=exp.LTE(this=start.copy(), expression=end.copy()), true=whole, false=empty
    )
    in_from = isinstance(node.parent, exp.Table) or node.find_ancestor(exp.From, exp.Join)
    if in_from:  # FROM generate_series(...): its rows
        return exp.Explode(this=guarded)
    return guarded  # in a SELECT list DuckDB returns the list


_SPARK = _Rules(
    dialect="spark",
    verified=frozenset(
        {
            # structure
            exp.Select,
            exp.From,
            exp.Join,
            exp.Where,
            exp.Group,
            exp.Having,
            exp.Order,
            exp.Ordered,
            exp.Limit,
            exp.Offset,
            exp.With,
            exp.CTE,
            exp.Subquery,
            exp.Union,
            exp.Intersect,
            exp.Except,
            exp.Distinct,
            exp.Qualify,
            exp.Table,
            exp.TableAlias,
            exp.Alias,
            exp.Column,
            exp.Identifier,
            exp.Star,
            exp.Literal,
            exp.Boolean,
            exp.Null,
            exp.Paren,
            exp.Var,
            exp.Tuple,
            # operators
            exp.Neg,
            exp.Not,
            exp.And,
            exp.Or,
            exp.EQ,
            exp.NEQ,
            exp.GT,
            exp.GTE,
            exp.LT,
            exp.LTE,
            exp.Is,
            exp.In,
            exp.Between,
            exp.Like,
            exp.ILike,
            exp.Mul,
            exp.Div,
            exp.IntDiv,
            exp.Mod,
            exp.DPipe,
            exp.NullSafeEQ,
            exp.NullSafeNEQ,
            exp.Case,
            exp.If,
            exp.Coalesce,
            exp.Nullif,
            exp.Cast,
            exp.TryCast,
            exp.Interval,
            exp.DataTypeParam,
            # aggregates and windows
            exp.Count,
            exp.Sum,
            exp.Avg,
            exp.Min,
            exp.Max,
            exp.Median,
            exp.Stddev,
            exp.StddevSamp,
            exp.StddevPop,
            exp.Variance,
            exp.VariancePop,
            exp.CountIf,
            exp.Window,
            exp.WindowSpec,
            exp.RowNumber,
            exp.Rank,
            exp.DenseRank,
            exp.Lag,
            exp.Lead,
            exp.FirstValue,
            exp.LastValue,
            # functions
            exp.Abs,
            exp.Round,
            exp.Floor,
            exp.Ceil,
            exp.Sqrt,
            exp.Ln,
            exp.Exp,
            exp.Pow,
            exp.Greatest,
            exp.Least,
            exp.Upper,
            exp.Lower,
            exp.Trim,
            exp.Substring,
            exp.Concat,
            exp.Replace,
            exp.StartsWith,
            exp.RegexpLike,
            exp.DateTrunc,
            exp.Extract,
            exp.TimestampTrunc,
            exp.Year,
            exp.Month,
            exp.Day,
            exp.DateDiff,
            exp.CurrentDate,
            exp.TimeToStr,
            exp.StrToTime,
            exp.ArraySize,
            exp.ArrayFilter,
            exp.Lambda,
            exp.Array,
            exp.Explode,
        }
    ),  # fmt: skip
    rewrites={
        exp.DayOfWeek: _day_of_week,
        exp.DayOfWeekIso: _iso_day_of_week,
        exp.Length: _length,
        exp.UnixToTime: _epoch_ms,
        exp.PercentileCont: _quantile,
        exp.GenerateSeries: _series,
        exp.Add: _date_shift,
        exp.Sub: _date_shift,
    },
    types=frozenset(
        {
            exp.DataType.Type.BIGINT,
            exp.DataType.Type.INT,
            exp.DataType.Type.SMALLINT,
            exp.DataType.Type.DOUBLE,
            exp.DataType.Type.DECIMAL,
            exp.DataType.Type.VARCHAR,
            exp.DataType.Type.TEXT,
            exp.DataType.Type.BOOLEAN,
            exp.DataType.Type.DATE,
            exp.DataType.Type.TIMESTAMP,
            exp.DataType.Type.TIMESTAMPNTZ,
        }
    ),  # fmt: skip
    refused={
        exp.ApproxDistinct: "an approximate count differs between engines: count(DISTINCT x)",
        exp.Anonymous: "a function sqlglot does not know has no verified mapping: use one "
        "of the verified functions (docs/engines.md), a Python step, or pin the step to DuckDB",
    },
)

_RULES: dict[str, _Rules] = {"spark": _SPARK}
