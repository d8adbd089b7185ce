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
    import pyarrow as pa
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


def duckdb_type(kind: pa.DataType) -> str:
    """An Arrow type as DuckDB names it (the translation types a step by its inputs)."""
    import pyarrow as pa

    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return duckdb_type(kind.value_type) + "[]"
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    names = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.binary(): "BLOB",
    }
    return names.get(kind, "UNKNOWN")


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
    from sqlglot.errors import ParseError, TokenError
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    try:
        statements = sqlglot.parse(sql, read=SOURCE)
    except (ParseError, TokenError) as exc:
        errors = getattr(exc, "errors", None)
        line = errors[0].get("line") if errors else None
        hint = "the SQL must parse as DuckDB's: check it with `gristmill run` on DuckDB"
        raise Untranslatable(target, [Refusal("SQL that does not parse", line, hint)]) from None
    statements = [s for s in statements if s is not None]
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
        if method == "ASOF" and rules.dialect == "spark":
            return _asof(node)
        hint = f"{method} JOIN is DuckDB's own: join on keys, or pin the step to DuckDB"
        return Refusal(f"{method} JOIN", _line(node), _JOIN_HINT if method == "ASOF" else hint)
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
            if _type_of(replaced) is None:  # what DuckDB's SQL gives, for the rewrites above
                replaced.type = node.type
            node.replace(replaced)
        return None
    if kind in rules.verified:
        return None
    hint = (
        "it is not among the functions verified on this engine: compute it in a Python "
        "step, or pin the step to DuckDB"
    )
    return Refusal(_shown(node), _line(node), hint)


_ASOF_ROW = "__gm_asof_row"


def _asof(join: exp.Join) -> Refusal | None:
    """``l ASOF [LEFT] JOIN r ON l.k = r.k AND l.t >= r.t``: each left row with the right
    row nearest before it (after it for ``<``/``<=``). On Spark: the join with the
    inequality, then one row per left row (tagged first), the nearest kept by QUALIFY. Ties
    (two right rows at the same nearest time) are broken arbitrarily on both engines."""
    select = join.parent
    refusal = Refusal("ASOF JOIN", _line(join), _JOIN_HINT)
    if not isinstance(select, exp.Select) or len(select.args.get("joins") or []) != 1:
        return refusal
    if any(select.args.get(k) for k in ("group", "having", "qualify", "distinct", "windows")):
        return refusal
    if any(isinstance(e, exp.Star) or e.find(exp.Window) for e in select.expressions):
        return refusal
    source = select.args["from_"].this
    left = source.alias_or_name
    right = join.this.alias_or_name
    if not isinstance(source, exp.Table) or not left or not right:
        return refusal
    conditions = (
        list(join.args["on"].flatten())
        if isinstance(join.args.get("on"), exp.And)
        else [join.args.get("on")]
    )
    inequalities = [c for c in conditions if isinstance(c, (exp.GT, exp.GTE, exp.LT, exp.LTE))]
    if len(inequalities) != 1 or not all(
        isinstance(c, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)) for c in conditions
    ):
        return refusal
    bound = inequalities[0]
    sides = (bound.this, bound.expression)
    if not all(isinstance(c, exp.Column) for c in sides):
        return refusal
    tables = [c.table for c in sides]
    if tables == [left, right]:
        later_is_nearer = isinstance(bound, (exp.GT, exp.GTE))  # l.t > r.t: latest r.t
        nearest = sides[1]
    elif tables == [right, left]:
        later_is_nearer = isinstance(bound, (exp.LT, exp.LTE))  # r.t < l.t
        nearest = sides[0]
    else:
        return refusal
    tagged = exp.select(
        exp.Star(),
        exp.alias_(exp.Anonymous(this="MONOTONICALLY_INCREASING_ID"), _ASOF_ROW),
    ).from_(exp.Table(this=source.this.copy(), db=source.args.get("db")))
    source.replace(exp.Subquery(this=tagged, alias=exp.TableAlias(this=exp.to_identifier(left))))
    join.set("method", None)
    order = exp.Ordered(this=nearest.copy(), desc=later_is_nearer, nulls_first=False)
    row = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column(_ASOF_ROW, table=left)],
        order=exp.Order(expressions=[order]),
    )
    select.set("qualify", exp.Qualify(this=exp.EQ(this=row, expression=exp.Literal.number(1))))
    return None


_JOIN_HINT = (
    "an ASOF JOIN translates alone in its SELECT (no GROUP BY, window or DISTINCT there; "
    "put those in an outer query), on equalities and one inequality between two columns; "
    "a point-in-time join of labels and features belongs in gm.training_set"
)
_TYPE_HINT = "cast to BIGINT, INTEGER, DOUBLE, DECIMAL(p, s), VARCHAR, BOOLEAN, DATE or TIMESTAMP"


def _shown(node: exp.Expr) -> str:
    if isinstance(node, exp.ApproxDistinct):
        return "approx_count_distinct()"
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
        if isinstance(n, exp.Identifier):
            return exp.to_identifier(n.name, quoted=not re.fullmatch(r"[a-z_][a-z0-9_]*", n.name))
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
    if isinstance(node.this, exp.ArrayDistinct) and isinstance(node.this.this, exp.ArrayAgg):
        values = node.this.this.this.copy()
        return exp.ArraySize(this=exp.Anonymous(this="COLLECT_SET", expressions=[values]))
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
        # DuckDB rounds the microseconds half away from zero; Spark's UNIX_MILLIS truncates
        moment = exp.cast(node.this.copy(), exp.DataType.Type.TIMESTAMPNTZ)
        micros = exp.Anonymous(this="UNIX_MICROS", expressions=[moment])
        millis = exp.Div(this=micros, expression=exp.Literal.number("1000.0"))
        return exp.cast(exp.Round(this=millis), exp.DataType.Type.BIGINT)
    if kind is not None and kind.is_type(*exp.DataType.INTEGER_TYPES):
        return exp.Anonymous(this="TIMESTAMP_MILLIS", expressions=[node.this.copy()])
    return Refusal(
        _as_written(node),
        _line(node),
        "epoch_ms of a value whose type is not known here: cast it to TIMESTAMP or BIGINT",
    )


def _epoch(node: exp.Expr) -> exp.Expr | Refusal:
    """``epoch(ts)``: seconds as a DOUBLE, microseconds divided by a million (DuckDB's)."""
    kind = _type_of(node.this)
    if kind is None or not kind.is_type(*exp.DataType.TEMPORAL_TYPES):
        return Refusal(_as_written(node), _line(node), "epoch of a TIMESTAMP or DATE")
    moment = exp.cast(node.this.copy(), exp.DataType.Type.TIMESTAMPNTZ)
    micros = exp.Anonymous(this="UNIX_MICROS", expressions=[moment])
    return exp.Div(
        this=exp.cast(micros, exp.DataType.Type.DOUBLE), expression=exp.Literal.number("1000000.0")
    )


def _distinct_count_only(node: exp.Expr) -> exp.Expr | Refusal:
    """``list(x)`` and ``list_distinct(...)`` pass only as ``len(list_distinct(list(x)))``
    (the number of distinct non-NULL values: the same on both engines, whatever the lists'
    order); ``_length`` rewrites the whole."""
    chain = node if isinstance(node, exp.ArrayDistinct) else node.parent
    if (
        isinstance(chain, exp.ArrayDistinct)
        and isinstance(chain.this, exp.ArrayAgg)
        and isinstance(chain.parent, (exp.Length, exp.ArraySize))
    ):
        return node
    return Refusal(
        _shown(node),
        _line(node),
        "lists built by an aggregate are ordered differently on each engine: only "
        "len(list_distinct(list(x))) (a count of distinct values) is verified",
    )


_TRUNC_UNITS = frozenset({"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND"})


def _date_trunc(node: exp.Expr) -> exp.Expr | Refusal:
    """date_trunc with a literal unit both engines know (Spark answers NULL for a unit it
    does not know, and sqlglot reads a column as the unit's name)."""
    unit = node.args.get("unit")
    name = unit.name.upper() if isinstance(unit, (exp.Var, exp.Literal)) else ""
    if name in _TRUNC_UNITS:
        return node
    return Refusal(
        _as_written(node),
        _line(node),
        "date_trunc with a literal unit: year, quarter, month, week, day, hour, minute or second",
    )


def _average(node: exp.Expr) -> exp.Expr | Refusal:
    """avg(DECIMAL): DuckDB divides the exact sum, as a DOUBLE, by the count; Spark's avg
    keeps four more decimals only."""
    kind = _type_of(node.this)
    if kind is None or not kind.is_type(exp.DataType.Type.DECIMAL):
        return node
    if isinstance(node.parent, exp.Window):
        return Refusal(_as_written(node), _line(node), "in a window, take avg(CAST(x AS DOUBLE))")
    total = exp.cast(exp.Sum(this=node.this.copy()), exp.DataType.Type.DOUBLE)
    return exp.Div(this=total, expression=exp.Count(this=node.this.copy()))


def _ln(node: exp.Expr) -> exp.Expr:
    """ln(0) is -inf and ln of a negative NaN on DuckDB; NULL on Spark."""
    x = node.this
    inf = exp.cast(exp.Literal.string("-Infinity"), exp.DataType.Type.DOUBLE)
    nan = exp.cast(exp.Literal.string("NaN"), exp.DataType.Type.DOUBLE)
    return exp.Case(
        ifs=[
            exp.If(this=exp.EQ(this=x.copy(), expression=exp.Literal.number(0)), true=inf),
            exp.If(this=exp.LT(this=x.copy(), expression=exp.Literal.number(0)), true=nan),
        ],
        default=exp.Ln(this=x.copy()),
    )


def _integer_division(node: exp.Expr) -> exp.Expr | Refusal:
    """``//`` of integers (both truncate); of a DECIMAL or DOUBLE DuckDB divides exactly."""
    kinds = [_type_of(node.this), _type_of(node.expression)]
    if all(k is not None and k.is_type(*exp.DataType.INTEGER_TYPES) for k in kinds):
        return node
    return Refusal(_as_written(node), _line(node), "`//` of integers only: write floor(a / b)")


def _is_nan(node: exp.Expr) -> exp.Expr:
    """isnan of NULL: NULL on DuckDB, false on Spark."""
    value = node.this
    missing = exp.Is(this=value.copy(), expression=exp.Null())
    return exp.Case(
        ifs=[exp.If(this=missing, true=exp.Null())], default=exp.IsNan(this=value.copy())
    )


def _numeric_quantile(node: exp.Expr) -> exp.Expr | Refusal:
    """median/quantile_cont: Spark interpolates in DOUBLE; DuckDB keeps DECIMALs exact."""
    kind = _type_of(node.this)
    if kind is not None and kind.is_type(*exp.DataType.INTEGER_TYPES, *exp.DataType.REAL_TYPES):
        if not kind.is_type(exp.DataType.Type.DECIMAL):
            return _quantile(node) if isinstance(node, exp.PercentileCont) else node
    return Refusal(
        _as_written(node), _line(node), "median/quantile_cont of a DOUBLE or an integer column"
    )


def _lambda(node: exp.Expr) -> exp.Expr | Refusal:
    """A lambda of one parameter: DuckDB counts a second (the index) from 1, Spark from 0."""
    if len(node.expressions) == 1:
        return node
    return Refusal(_as_written(node), _line(node), "a lambda of one parameter (no index)")


def _offset_default(node: exp.Expr) -> exp.Expr | Refusal:
    """lag/lead with a default of the value's own type (DuckDB casts it, Spark does not)."""
    default = node.args.get("default")
    if default is None:
        return node
    value, given = _type_of(node.this), _type_of(default)
    if isinstance(default, exp.Null) or (
        value is not None and given is not None and value.this == given.this
    ):
        return node
    whole = isinstance(default, exp.Literal) and not default.is_string and default.name.isdigit()
    if whole and value is not None and value.is_type(*exp.DataType.REAL_TYPES):
        return node  # 0 as 0.0: the same on both
    return Refusal(_as_written(node), _line(node), "cast the default to the value's type")


def _interval_arithmetic(node: exp.Expr) -> exp.Expr | Refusal:
    """An INTERVAL times a number: DuckDB spreads fractions over days, Spark does not."""
    if any(isinstance(side, exp.Interval) for side in (node.this, node.expression)):
        return Refusal(_as_written(node), _line(node), "write the interval out: INTERVAL 45 DAY")
    return node


def _no_lists(node: exp.Expr) -> exp.Expr | Refusal:
    """min/max of lists: the engines order NULL elements differently."""
    kind = _type_of(node.this)
    if kind is not None and kind.is_type(exp.DataType.Type.ARRAY):
        return Refusal(_as_written(node), _line(node), "min/max of scalar values only")
    return node


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
    """generate_series(a, b[, step]) (b included) and range(a, b[, step]) (b excluded):
    empty when a is past b, where Spark's SEQUENCE would count backwards (or fail). A step
    must be a positive literal: a number, or an INTERVAL for timestamps."""
    start, end, step = node.args["start"], node.args["end"], node.args.get("step")
    temporal = any(
        k is not None and k.is_type(*exp.DataType.TEMPORAL_TYPES)
        for k in (_type_of(start), _type_of(end))
    )
    months = False
    if step is not None:
        if isinstance(step, exp.Interval) and temporal:
            amount, unit = step.this, step.args.get("unit")
            unit_name = unit.name.upper() if unit is not None else ""
            positive = amount is not None and amount.name.isdigit() and int(amount.name) > 0
            months = unit_name in ("MONTH", "MONTHS", "YEAR", "YEARS", "QUARTER", "QUARTERS")
        else:
            positive = isinstance(step, exp.Literal) and step.name.isdigit() and int(step.name) > 0
        if not positive or (temporal and not isinstance(step, exp.Interval)):
            return Refusal(
                _as_written(node),
                _line(node),
                "a series' step must be a positive literal: a number, or an INTERVAL for "
                "timestamps",
            )
    if temporal and node.args.get("is_end_exclusive"):
        return Refusal(_as_written(node), _line(node), "use generate_series for timestamps")
    if node.args.get("is_end_exclusive"):
        end = exp.Sub(this=exp.Paren(this=end.copy()), expression=exp.Literal.number(1))
    if not temporal:
        start, end = (exp.cast(v.copy(), exp.DataType.Type.BIGINT) for v in (start, end))
    steps = [step.copy()] if step is not None else []
    whole = exp.Anonymous(this="SEQUENCE", expressions=[start.copy(), end.copy(), *steps])
    one = exp.Anonymous(this="SEQUENCE", expressions=[start.copy(), start.copy(), *steps])
    empty = exp.Anonymous(
        this="SLICE", expressions=[one, exp.Literal.number(1), exp.Literal.number(0)]
    )
    guarded: exp.Expr = exp.If(
        this=exp.LTE(this=start.copy(), expression=end.copy()), true=whole, false=empty
    )
    if months:  # DuckDB adds the step to the last value (Jan 31, Feb 28, Mar 28); Spark
        # multiplies it from the start (Jan 31, Feb 28, Mar 31): the same below day 29
        day = exp.Anonymous(this="DAYOFMONTH", expressions=[start.copy()])
        message = (
            "generate_series by months from a day past the 28th: DuckDB and Spark count "
            "the months differently; start from a month's first days or run the step on DuckDB"
        )
        guarded = _unless(exp.GT(this=day, expression=exp.Literal.number(28)), message, guarded)
    in_from = isinstance(node.parent, exp.Table) or isinstance(
        node.find_ancestor(exp.From, exp.Join, exp.Select), (exp.From, exp.Join)
    )
    if in_from:  # FROM generate_series(...): its rows, in a column named as DuckDB names it
        table = node.parent if isinstance(node.parent, exp.Table) else None
        alias = table.args.get("alias") if table is not None else None
        if table is not None and (alias is None or not alias.columns):
            name = alias.name if alias is not None and alias.name else "_series"
            column = "range" if node.args.get("is_end_exclusive") else "generate_series"
            table.set(
                "alias",
                exp.TableAlias(this=exp.to_identifier(name), columns=[exp.to_identifier(column)]),
            )
        return exp.Explode(this=guarded)
    return guarded  # in a SELECT list DuckDB returns the list


# -- guards: where Spark's answer for some values differs and cannot be emulated, the step
# fails on those values with the reason instead of writing a different result


def _fails(message: str) -> exp.Expr:
    return exp.Anonymous(this="RAISE_ERROR", expressions=[exp.Literal.string(message)])


def _unless(condition: exp.Expr, message: str, value: exp.Expr) -> exp.Expr:
    """``value``, or the step fails where ``condition`` holds."""
    return exp.Case(ifs=[exp.If(this=condition, true=_fails(message))], default=value)


def _matches(value: exp.Expr, pattern: str) -> exp.Expr:
    return exp.RegexpLike(this=value.copy(), expression=exp.Literal.string(pattern))


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]"


def _replaced(value: exp.Expr, pairs: tuple[tuple[str, str], ...]) -> exp.Expr:
    for old, new in pairs:
        value = exp.Anonymous(
            this="REPLACE", expressions=[value, exp.Literal.string(old), exp.Literal.string(new)]
        )
    return value


# Characters whose case mapping differs between DuckDB 2 (utf8proc, one character to one)
# and Spark 4.3 (ICU: full mappings, a newer Unicode), found by comparing both engines over
# every code point (tests/engines/test_dialect.py does it again). Those that have a
# one-to-one answer are replaced first (ß -> ẞ as DuckDB does; İ -> i; Σ -> σ, where Spark
# would write a final sigma); text holding any of the others fails on Spark.
_UPPER_DIFFERS = _char_class(
    (
        (329, 329), (411, 411), (496, 496), (612, 612), (912, 912), (944, 944),
        (1415, 1415), (7306, 7306), (7830, 7834), (8016, 8016), (8018, 8018), (8020, 8020),
        (8022, 8022), (8064, 8111), (8114, 8116), (8118, 8119), (8124, 8124), (8130, 8132),
        (8134, 8135), (8140, 8140), (8146, 8147), (8150, 8151), (8162, 8164), (8166, 8167),
        (8178, 8180), (8182, 8183), (8188, 8188), (42957, 42957), (42959, 42959),
        (42963, 42963), (42965, 42965), (42971, 42971), (64256, 64262), (64275, 64279),
        (68976, 68997), (93883, 93907),
    )
)  # fmt: skip
_LOWER_DIFFERS = _char_class(
    (
        (7305, 7305), (42955, 42956), (42958, 42958), (42962, 42962), (42964, 42964),
        (42970, 42970), (42972, 42972), (68944, 68965), (93856, 93880),
    )
)  # fmt: skip
_CASE_HINT = (
    "its case mapping differs between DuckDB and Spark for a few rare characters: run the "
    "step on DuckDB"
)


def _upper(node: exp.Expr) -> exp.Expr:
    value = exp.Upper(this=_replaced(node.this.copy(), (("ß", "ẞ"),)))
    message = f"upper() met text holding a character {_CASE_HINT}"
    return _unless(_matches(node.this, _UPPER_DIFFERS), message, value)


def _lower(node: exp.Expr) -> exp.Expr:
    value = exp.Lower(this=_replaced(node.this.copy(), (("İ", "i"), ("Σ", "σ"))))
    message = f"lower() met text holding a character {_CASE_HINT}"
    return _unless(_matches(node.this, _LOWER_DIFFERS), message, value)


_DUCKDB_SPACES = "".join(
    chr(c) for c in (0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)
)
"""What DuckDB's trim() removes without a second argument: the space and Unicode's other
spaces (not tabs or newlines); Spark's removes the space only."""


def _trim(node: exp.Expr) -> exp.Expr:
    if node.args.get("expression") is None:
        node.set("expression", exp.Literal.string(_DUCKDB_SPACES))
        if not node.args.get("position"):
            node.set("position", "BOTH")
    return node


_EXTRACT_AS_IS = frozenset({"YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE", "WEEK", "DOY"})


def _extract(node: exp.Expr) -> exp.Expr | Refusal:
    part, value = node.this.name.upper(), node.expression
    if part in _EXTRACT_AS_IS:
        return node
    if part == "SECOND":  # DuckDB's whole seconds; Spark's EXTRACT has the fraction
        return exp.Anonymous(this="SECOND", expressions=[value.copy()])
    if part in ("DOW", "DAYOFWEEK"):
        return _day_of_week(exp.DayOfWeek(this=value))
    if part == "ISODOW":
        return _iso_day_of_week(exp.DayOfWeekIso(this=value))
    return Refusal(
        f"extract({part.lower()} FROM ...)",
        _line(node),
        "extract year, quarter, month, week, day, doy, dow, isodow, hour, minute or second; "
        "for epoch milliseconds write epoch_ms(ts)",
    )


_PART_FUNCTIONS: dict[type[exp.Expr], str] = {
    exp.Hour: "HOUR",
    exp.Minute: "MINUTE",
    exp.Second: "SECOND",
    exp.Quarter: "QUARTER",
    exp.Week: "WEEK",
    exp.DayOfYear: "DOY",
}


def _part_function(node: exp.Expr) -> exp.Expr | Refusal:
    """hour(ts), minute(ts), … as the extract(part FROM ts) they are on DuckDB."""
    if node.expressions or node.args.get("mode") is not None:
        return Refusal(_as_written(node), _line(node), "one argument: the date or timestamp")
    part = _PART_FUNCTIONS[type(node)]
    return _extract(exp.Extract(this=exp.var(part), expression=node.this.copy()))


_DIFF_UNITS = frozenset({"YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND"})


def _date_diff(node: exp.Expr) -> exp.Expr | Refusal:
    """DuckDB's date_diff counts the unit's boundaries crossed; Spark's whole units between.
    Between values truncated to the unit the two are the same."""
    unit = node.args.get("unit")
    name = unit.name.upper() if unit is not None else "DAY"
    if name not in _DIFF_UNITS:
        return Refusal(
            f"date_diff('{name.lower()}', ...)",
            _line(node),
            "date_diff in year, quarter, month, day, hour, minute or second",
        )

    def truncated(value: exp.Expr) -> exp.Expr:
        moment = exp.cast(value.copy(), exp.DataType.Type.TIMESTAMPNTZ)
        return exp.Anonymous(this="DATE_TRUNC", expressions=[exp.Literal.string(name), moment])

    return exp.Anonymous(
        this="TIMESTAMPDIFF",
        expressions=[exp.var(name), truncated(node.expression), truncated(node.this)],
    )


_PLAIN = {
    "integer": r"^ *[+-]?[0-9]+ *$",
    "number": r"^ *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "timestamp": (
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]"
        r"(\.[0-9]{1,6})?)?)?$"
    ),
}
"""Text both engines read the same way, per target type."""


def _cast(node: exp.Expr) -> exp.Expr | Refusal:
    """CAST and TRY_CAST where the engines differ: a DOUBLE to an integer (DuckDB rounds
    half to even, Spark truncates), a DECIMAL to an integer (DuckDB rounds half away from
    zero), a DOUBLE to text (formatted differently), and text DuckDB reads more liberally
    ('1.5', '1e3' and '0x10' are integers to it)."""
    assert isinstance(node, exp.Cast)  # TryCast is one
    target, source = node.to, _type_of(node.this)
    if source is None or source.this == target.this:
        return node
    real = (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)
    if target.is_type(*exp.DataType.TEXT_TYPES) and source.is_type(exp.DataType.Type.ARRAY):
        return Refusal(_as_written(node), _line(node), "a list prints differently on each engine")
    if target.is_type(*exp.DataType.TEXT_TYPES) and source.is_type(exp.DataType.Type.DECIMAL):
        params = [p.name for p in source.expressions]
        if len(params) == 2 and params[0] == params[1]:  # DuckDB writes .5, Spark 0.5
            return Refusal(
                _as_written(node), _line(node), "cast a DECIMAL(p, p) to DECIMAL(p + 1, p) first"
            )
    if target.is_type(*exp.DataType.TEXT_TYPES) and isinstance(node.this, exp.Literal):
        return node
    if target.is_type(*exp.DataType.TEXT_TYPES) and not source.is_type(*real):
        return node
    safe = isinstance(node, exp.TryCast)
    value = node.this
    if target.is_type(*exp.DataType.TEXT_TYPES):  # from a DOUBLE or FLOAT
        return Refusal(
            _as_written(node),
            _line(node),
            "a DOUBLE formats differently as text on each engine: cast it to DECIMAL(p, s) first",
        )
    if target.is_type(*exp.DataType.INTEGER_TYPES):
        if source.is_type(*real):
            value = exp.Anonymous(this="BROUND", expressions=[value.copy(), exp.Literal.number(0)])
        elif source.is_type(exp.DataType.Type.DECIMAL):
            value = exp.Round(this=value.copy(), decimals=exp.Literal.number(0))
        node.set("this", value)
    if source.is_type(*exp.DataType.TEXT_TYPES):
        if target.is_type(*exp.DataType.INTEGER_TYPES):
            kind = "integer"
        elif target.is_type(*exp.DataType.REAL_TYPES):
            kind = "number"
        elif target.is_type(exp.DataType.Type.DATE):
            kind = "date"
        elif target.is_type(*exp.DataType.TEMPORAL_TYPES):
            kind = "timestamp"
        else:
            return node
        message = (
            f"{'TRY_CAST' if safe else 'CAST'} of text to {target.sql(SOURCE)} met a value "
            f"DuckDB and Spark read differently (plain {kind}s only on Spark): clean the "
            "text first or run the step on DuckDB"
        )
        plain = _PLAIN[kind]
        if kind == "number" and target.is_type(*real):
            plain = f"{plain}|^ *[+-]?([Nn][Aa][Nn]|[Ii][Nn][Ff]([Ii][Nn][Ii][Tt][Yy])?) *$"
        if isinstance(value, exp.Literal) and value.is_string:
            import re

            if re.search(plain, value.name) or safe and not re.search("[0-9]", value.name):
                return node
            return Refusal(_as_written(node), _line(node), f"write the {kind} plainly")
        differs: exp.Expr = exp.Not(this=_matches(value, plain))
        if safe:  # text with no digit is NULL on both
            differs = exp.and_(differs, _matches(value, "[0-9]"))
        return _unless(differs, message, node.copy())
    return node


def _like(node: exp.Expr) -> exp.Expr | Refusal:
    """DuckDB's LIKE has no escape character unless given one; Spark's is the backslash."""
    if isinstance(node.parent, exp.Escape):
        return node
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        return Refusal(
            _as_written(node),
            _line(node),
            "a LIKE pattern must be a literal here (a backslash means something else on "
            "Spark): write it out, or use ESCAPE",
        )
    if "\\" not in pattern.name:
        return node
    free = next((c for c in "!#~^|@&=;:" if c not in pattern.name), None)
    if free is None:
        return Refusal(_as_written(node), _line(node), "write the pattern with ESCAPE '<char>'")
    return exp.Escape(this=node.copy(), expression=exp.Literal.string(free))


def _divide(node: exp.Expr) -> exp.Expr:
    """DuckDB's / gives a DOUBLE for integers and decimals alike; Spark's keeps decimals
    (1.0 / 3.0 is 0.333333 there). By zero DuckDB answers as IEEE does (±inf, NaN for 0/0
    and NaN/0, the sign of a zero divisor counted); Spark in ANSI mode fails."""
    kinds = [_type_of(node.this), _type_of(node.expression)]
    if any(
        k is not None
        and k.is_type(
            exp.DataType.Type.FLOAT, *exp.DataType.TEMPORAL_TYPES, exp.DataType.Type.INTERVAL
        )
        for k in kinds
    ):
        return node
    a, b = (
        exp.cast(node.args[side].copy(), exp.DataType.Type.DOUBLE)
        for side in ("this", "expression")
    )

    def double(text: str) -> exp.Expr:
        return exp.cast(exp.Literal.string(text), exp.DataType.Type.DOUBLE)

    zero = exp.Literal.number(0)
    # atan2(-0.0, -1) is -pi, atan2(0.0, -1) pi: the sign of a zero divisor
    divisor_positive = exp.GT(
        this=exp.Anonymous(this="ATAN2", expressions=[b.copy(), exp.Literal.number(-1)]),
        expression=zero.copy(),
    )
    by_zero = exp.Case(
        ifs=[
            exp.If(
                this=exp.or_(
                    exp.Anonymous(this="ISNAN", expressions=[a.copy()]),
                    exp.EQ(this=a.copy(), expression=zero.copy()),
                ),
                true=double("NaN"),
            ),
            exp.If(
                this=exp.EQ(
                    this=exp.Paren(this=exp.GT(this=a.copy(), expression=zero.copy())),
                    expression=exp.Paren(this=divisor_positive),
                ),
                true=double("Infinity"),
            ),
        ],
        default=double("-Infinity"),
    )
    quotient = exp.Div(this=a, expression=b)
    replaced = exp.Case(
        ifs=[exp.If(this=exp.EQ(this=b.copy(), expression=zero.copy()), true=by_zero)],
        default=quotient,
    )
    replaced.type = exp.DataType.build("DOUBLE")  # as on DuckDB, for the rewrites above it
    return replaced


def _round(node: exp.Expr) -> exp.Expr | Refusal:
    """round(DOUBLE, n): DuckDB scales by 10^n, rounds half away from zero and scales back
    (and keeps the input where that overflows); Spark rounds the decimal it prints."""
    kind = _type_of(node.this)
    decimals = node.args.get("decimals")
    if kind is None and decimals is not None:
        return Refusal(
            _as_written(node),
            _line(node),
            "round of a value whose type is not known here: cast it to DOUBLE or DECIMAL(p, s)",
        )
    if kind is None or not kind.is_type(exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
        return node
    if decimals is None or decimals.name == "0" and isinstance(decimals, exp.Literal):
        return node
    try:
        digits = decimals.to_py() if isinstance(decimals, (exp.Literal, exp.Neg)) else None
    except ValueError:
        digits = None
    if not isinstance(digits, int) or not -20 <= digits <= 20:
        return Refusal(
            _as_written(node),
            _line(node),
            "round a DOUBLE to a literal number of digits from -20 to 20",
        )
    scale = exp.Literal.number(float(10 ** abs(digits)))
    x = node.this
    rounded: exp.Expr
    if digits > 0:
        rounded = exp.Div(
            this=exp.Round(this=exp.Mul(this=x.copy(), expression=scale)), expression=scale.copy()
        )
    else:
        rounded = exp.Mul(
            this=exp.Round(this=exp.Div(this=x.copy(), expression=scale)), expression=scale.copy()
        )
    overflowed = exp.or_(
        exp.Anonymous(this="ISNAN", expressions=[rounded.copy()]),
        exp.EQ(
            this=exp.Abs(this=rounded.copy()),
            expression=exp.cast(exp.Literal.string("Infinity"), exp.DataType.Type.DOUBLE),
        ),
    )
    return exp.Case(ifs=[exp.If(this=overflowed, true=x.copy())], default=rounded)


def _substring(node: exp.Expr) -> exp.Expr | Refusal:
    """substring(s, start, length) agrees for a literal start of 1 or more and a literal
    length of 0 or more (DuckDB counts a start of 0 or less differently)."""
    start, length = node.args.get("start"), node.args.get("length")

    def literal_at_least(value: exp.Expr | None, low: int) -> bool:
        return (
            isinstance(value, exp.Literal)
            and not value.is_string
            and value.name.isdigit()
            and int(value.name) >= low
        )

    if literal_at_least(start, 1) and (length is None or literal_at_least(length, 0)):
        return node
    return Refusal(
        _as_written(node),
        _line(node),
        "substring with a literal start of 1 or more and a literal length: DuckDB and Spark "
        "count other starts differently",
    )


_REGEX_REFUSED = (
    "[:", "\\p", "\\P", "\\Q", "\\E", "\\h", "\\H", "\\v", "\\V", "\\z", "\\Z", "\\G", "\\R",
    "\\X", "\\b", "\\B", "\\k", "(?", "*+", "++", "?+", "}+", "\\x", "\\u", "\\0",
)  # fmt: skip
_LINE_BREAKS = "[\n\r\u000b\u0085\u2028\u2029]"


def _regexp(node: exp.Expr) -> exp.Expr | Refusal:
    """regexp_matches: RE2 on DuckDB, Java's regex on Spark. The constructs both read
    alike pass; where they differ on line breaks (``.``, ``$``, ``\\s``), text holding one
    fails on Spark."""
    pattern = node.expression
    hint = (
        "regexp_matches takes a literal pattern of characters, classes without [:name:], "
        "\\d \\w \\s, anchors ^ $ and quantifiers (no flags, backreferences or \\b): both "
        "engines read those alike"
    )
    if node.args.get("flag") is not None or not (
        isinstance(pattern, exp.Literal) and pattern.is_string
    ):
        return Refusal(_as_written(node), _line(node), hint)
    text = pattern.name
    if any(piece in text for piece in _REGEX_REFUSED) or any(f"\\{d}" in text for d in "123456789"):
        return Refusal(f"regexp_matches(..., '{text}')", _line(node), hint)
    if any(piece in text.replace("\\\\", "") for piece in (".", "$", "\\s", "\\S")):
        message = (
            "regexp_matches() met text holding a line break, where DuckDB's and Spark's "
            "regular expressions differ: run the step on DuckDB"
        )
        return _unless(_matches(node.this, _LINE_BREAKS), message, node.copy())
    return node


_FORMATS = {
    "%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%y": "yy",
    "%b": "MMM", "%B": "MMMM", "%a": "EEE", "%A": "EEEE", "%I": "hh", "%p": "a", "%j": "DDD",
    "%f": "SSSSSS",
}  # fmt: skip
"""strftime's directives verified against Spark's date_format patterns."""


def _java_format(node: exp.Expr, fmt: str, allowed: dict[str, str]) -> str | Refusal:
    import re

    parts: list[str] = []
    literal = ""  # runs of text between directives, quoted once
    for piece in re.split(r"(%.)", fmt):
        if piece.startswith("%") and len(piece) == 2 and piece != "%%":
            if piece not in allowed:
                return Refusal(
                    f"{piece} in a time format",
                    _line(node),
                    f"use the directives {' '.join(allowed)} and %%",
                )
            if literal:
                parts.append("'" + literal.replace("'", "''") + "'")
                literal = ""
            parts.append(allowed[piece])
        else:
            literal += "%" if piece == "%%" else piece
    if literal:
        parts.append("'" + literal.replace("'", "''") + "'")
    return "".join(parts)


def _strftime(node: exp.Expr) -> exp.Expr | Refusal:
    fmt = node.args.get("format")
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        return Refusal(_as_written(node), _line(node), "strftime with a literal format")
    pattern = _java_format(node, fmt.name, _FORMATS)
    if isinstance(pattern, Refusal):
        return pattern
    return exp.Anonymous(
        this="DATE_FORMAT", expressions=[node.this.copy(), exp.Literal.string(pattern)]
    )


_PARSE_FORMATS = {"%Y": "yyyy", "%m": "M", "%d": "d", "%H": "H", "%M": "m", "%S": "s"}
"""strptime's: like DuckDB's, one or two digits for each but the year."""


def _strptime(node: exp.Expr) -> exp.Expr | Refusal:
    fmt = node.args.get("format")
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        return Refusal(_as_written(node), _line(node), "strptime with a literal format")
    pattern = _java_format(node, fmt.name, _PARSE_FORMATS)
    if isinstance(pattern, Refusal):
        return pattern
    return exp.cast(
        exp.Anonymous(
            this="TO_TIMESTAMP_NTZ", expressions=[node.this.copy(), exp.Literal.string(pattern)]
        ),
        exp.DataType.Type.TIMESTAMPNTZ,
    )


def _concat(node: exp.Expr) -> exp.Expr | Refusal:
    """A DOUBLE joined to text is formatted differently by each engine."""
    operands = node.expressions if isinstance(node, exp.Concat) else [node.this, node.expression]
    for operand in operands:
        kind = _type_of(operand)
        if isinstance(operand, exp.Literal):  # 1.5 is a DECIMAL to both engines
            continue
        if kind is not None and kind.is_type(exp.DataType.Type.ARRAY):
            return Refusal(
                _as_written(node),
                _line(node),
                "joining lists differs on NULL lists between engines: use list_concat on DuckDB",
            )
        if kind is not None and kind.is_type(exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
            return Refusal(
                _as_written(node),
                _line(node),
                "a DOUBLE formats differently as text on each engine: cast it to "
                "DECIMAL(p, s) first",
            )
    return node


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
            exp.Mod,
            exp.NullSafeEQ,
            exp.NullSafeNEQ,
            exp.Case,
            exp.If,
            exp.Coalesce,
            exp.Nullif,
            exp.Interval,
            exp.DataTypeParam,
            # aggregates and windows
            exp.Count,
            exp.Sum,
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
            exp.FirstValue,
            exp.LastValue,
            # functions
            exp.Abs,
            exp.Floor,
            exp.Ceil,
            exp.Sqrt,
            exp.Exp,
            exp.Pow,
            exp.Greatest,
            exp.Least,
            exp.Replace,
            exp.StartsWith,
            exp.Year,
            exp.Month,
            exp.Day,
            exp.CurrentDate,
            exp.ArraySize,
            exp.ArrayFilter,
            exp.Array,
            exp.Explode,
            exp.Escape,
            exp.Filter,
        }
    ),  # fmt: skip
    rewrites={
        exp.DayOfWeek: _day_of_week,
        exp.DayOfWeekIso: _iso_day_of_week,
        exp.Length: _length,
        exp.UnixToTime: _epoch_ms,
        exp.PercentileCont: _numeric_quantile,
        exp.Median: _numeric_quantile,
        exp.DateTrunc: _date_trunc,
        exp.TimestampTrunc: _date_trunc,
        exp.Avg: _average,
        exp.Ln: _ln,
        exp.IsNan: _is_nan,
        exp.IntDiv: _integer_division,
        exp.Lambda: _lambda,
        exp.Lag: _offset_default,
        exp.Lead: _offset_default,
        exp.Mul: _interval_arithmetic,
        exp.Min: _no_lists,
        exp.Max: _no_lists,
        exp.GenerateSeries: _series,
        exp.Add: _date_shift,
        exp.Sub: _date_shift,
        exp.Upper: _upper,
        exp.TimeToUnix: _epoch,
        exp.ArrayAgg: _distinct_count_only,
        exp.ArrayDistinct: _distinct_count_only,
        exp.Lower: _lower,
        exp.Trim: _trim,
        exp.Extract: _extract,
        exp.DateDiff: _date_diff,
        **dict.fromkeys(_PART_FUNCTIONS, _part_function),
        exp.Cast: _cast,
        exp.TryCast: _cast,
        exp.Like: _like,
        exp.ILike: _like,
        exp.Div: _divide,
        exp.Round: _round,
        exp.Substring: _substring,
        exp.RegexpLike: _regexp,
        exp.TimeToStr: _strftime,
        exp.StrToTime: _strptime,
        exp.Concat: _concat,
        exp.DPipe: _concat,
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
