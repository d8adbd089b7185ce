"""Drift statistics computed where the data is: the engine aggregates, this process reads
a few numbers per column.

``stats.column_drift`` sorts a column in this process, which is fastest while a column
fits in memory (DuckDB's monitors). On an engine whose data lives on its workers (Spark)
the same statistics come from aggregates written in DuckDB's SQL, which the dialect
translates:

- per side: row, null and NaN counts; for the reference its population standard
  deviation, extremes and deciles (``quantile_cont``, linear like numpy's ``quantile``);
- per distinct value of both sides together: how many rows of each side hold it, and
  its decile bin. The bins' totals give both sides' shares; running sums within each
  bin, offset by the bins before, give both empirical CDFs at every value, hence the
  Kolmogorov-Smirnov gaps and the Wasserstein area. The running sums are partitioned by
  bin, so up to ten workers share the work and no value travels to this process;
- per category: each side's count.

``stats`` turns those into the same values (``numeric_statistics``,
``categorical_statistics``); the tests check them against ``column_drift`` and scipy to
1e-9 on both engines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from gristmill.execution.engines import Session
from gristmill.execution.monitoring.stats import (
    BINS,
    ColumnDrift,
    Kind,
    NumericSummary,
    categorical_statistics,
    numeric_statistics,
    with_null_rates,
)
from gristmill.execution.sql import q

_NUMERIC = re.compile(
    r"(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|REAL|DECIMAL(\(.*\))?)"
)


def is_numeric(duckdb_type: str) -> bool:
    """A DuckDB type name the numeric statistics apply to (BOOLEAN is categorical)."""
    return _NUMERIC.fullmatch(duckdb_type.strip().upper()) is not None


def column_drift(
    session: Session,
    name: str,
    reference: tuple[str, str],
    current: tuple[str, str],
    kind: Kind,
) -> ColumnDrift:
    """Every statistic of one column: ``reference`` and ``current`` are (relation, column)."""
    ref_rows, ref_missing = _counts(session, *reference)
    cur_rows, cur_missing = _counts(session, *current)
    ref, cur = _side(*reference), _side(*current)
    if kind is Kind.NUMERIC:
        values, histogram = numeric_statistics(_numeric_summary(session, ref, cur))
    else:
        values, histogram = categorical_statistics(*_category_counts(session, ref, cur))
    drift = ColumnDrift(
        column=name,
        kind=kind,
        reference_rows=ref_rows,
        current_rows=cur_rows,
        values=values,
        histogram=histogram,
    )
    return with_null_rates(
        drift,
        ref_missing / ref_rows if ref_rows else 0.0,
        cur_missing / cur_rows if cur_rows else 0.0,
    )


def _side(relation: str, column: str) -> tuple[str, str]:
    return q(relation), q(column)


def _value(column: str) -> str:
    return f"CAST({column} AS DOUBLE)"


def _present(column: str, numeric: bool) -> str:
    """The rows of a side the statistics count: no null, and for numbers no NaN."""
    if not numeric:
        return f"{column} IS NOT NULL"
    return f"{column} IS NOT NULL AND NOT isnan({_value(column)})"


def _counts(session: Session, relation: str, column: str) -> tuple[int, int]:
    """A side's rows, and how many of them are null (or NaN, for a floating column)."""
    floating = dict(session.columns(relation)).get(column, "").upper() in ("FLOAT", "DOUBLE")
    nan = f" OR isnan({q(column)})" if floating else ""
    ((rows, missing),) = session.rows(
        f"SELECT count(*), count_if({q(column)} IS NULL{nan}) FROM {q(relation)}"
    )
    return int(rows), int(missing or 0)


def _numeric_summary(
    session: Session, ref: tuple[str, str], cur: tuple[str, str]
) -> NumericSummary:
    (ref_relation, ref_column), (cur_relation, cur_column) = ref, cur
    deciles = ", ".join(f"quantile_cont({_value(ref_column)}, {i / BINS})" for i in range(1, BINS))
    ((n_ref, spread, low, high, *quantiles),) = session.rows(
        f"SELECT count(*), stddev_pop({_value(ref_column)}), min({_value(ref_column)}), "
        f"max({_value(ref_column)}), {deciles} "
        f"FROM {ref_relation} WHERE {_present(ref_column, True)}"
    )
    ((n_cur,),) = session.rows(
        f"SELECT count(*) FROM {cur_relation} WHERE {_present(cur_column, True)}"
    )
    n_ref, n_cur = int(n_ref), int(n_cur)
    if n_ref == 0 or n_cur == 0:
        return NumericSummary(n_ref, n_cur, [], np.empty(0), np.empty(0), 0, 0, 0, 0, 0, 0)
    edges = [float(e) for e in np.unique(np.array(quantiles, dtype=np.float64))]
    bins: dict[int, tuple[int, int]] = {}
    gaps: tuple[float, float, float] | None = None
    for kind, b, first, second, third in session.rows(_ecdf_sql(ref, cur, edges, n_ref, n_cur)):
        if kind == "bin":
            bins[int(b)] = (int(first), int(second))
        else:
            gaps = (float(first), float(second), float(third or 0.0))
    assert gaps is not None
    ref_share = np.array([bins.get(b, (0, 0))[0] for b in range(len(edges) + 1)]) / n_ref
    cur_share = np.array([bins.get(b, (0, 0))[1] for b in range(len(edges) + 1)]) / n_cur
    return NumericSummary(
        reference_rows=n_ref,
        current_rows=n_cur,
        edges=edges,
        reference_share=ref_share,
        current_share=cur_share,
        gap_high=gaps[0],
        gap_low=gaps[1],
        wasserstein=gaps[2],
        spread=float(spread or 0.0),
        low=float(low),
        high=float(high),
    )


def _double(value: float) -> str:
    """A DOUBLE literal that reads back as exactly ``value`` on every engine."""
    return f"CAST('{value!r}' AS DOUBLE)"


def _ecdf_sql(
    ref: tuple[str, str], cur: tuple[str, str], edges: Sequence[float], n_ref: int, n_cur: int
) -> str:
    """Rows ('bin', b, reference rows, current rows, NULL) per decile bin, and one row
    ('ecdf', NULL, max gap, min gap, Wasserstein) where gap = F_reference - F_current."""
    (ref_relation, ref_column), (cur_relation, cur_column) = ref, cur
    bin_of = (
        "CASE "
        + " ".join(f"WHEN v <= {_double(e)} THEN {i}" for i, e in enumerate(edges))
        + f" ELSE {len(edges)} END"
    )
    running = "ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    before = "ORDER BY b ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    return f"""
WITH sides AS (
    SELECT {_value(ref_column)} AS v, 1 AS r FROM {ref_relation}
    WHERE {_present(ref_column, True)}
    UNION ALL
    SELECT {_value(cur_column)} AS v, 0 AS r FROM {cur_relation}
    WHERE {_present(cur_column, True)}
), counted AS (
    SELECT v, sum(r) AS r, count(*) - sum(r) AS c FROM sides GROUP BY v
), binned AS (
    SELECT v, r, c, {bin_of} AS b FROM counted
), totals AS (
    SELECT b, sum(r) AS r, sum(c) AS c, min(v) AS lowest FROM binned GROUP BY b
), offsets AS (
    SELECT b, r, c,
           sum(r) OVER ({before}) - r AS r_before,
           sum(c) OVER ({before}) - c AS c_before,
           lead(lowest) OVER (ORDER BY b) AS next_lowest
    FROM totals
), running AS (
    SELECT b, v,
           sum(r) OVER (PARTITION BY b {running}) AS r_upto,
           sum(c) OVER (PARTITION BY b {running}) AS c_upto,
           lead(v) OVER (PARTITION BY b ORDER BY v) AS next_v
    FROM binned
), gaps AS (
    SELECT CAST(o.r_before + u.r_upto AS DOUBLE) / {n_ref}
           - CAST(o.c_before + u.c_upto AS DOUBLE) / {n_cur} AS gap,
           coalesce(u.next_v, o.next_lowest) - u.v AS width
    FROM running AS u JOIN offsets AS o ON u.b = o.b
)
SELECT 'bin' AS kind, b, CAST(r AS DOUBLE) AS first, CAST(c AS DOUBLE) AS second,
       CAST(NULL AS DOUBLE) AS third
FROM totals
UNION ALL
SELECT 'ecdf', NULL, max(gap), min(gap), sum(abs(gap) * width) FROM gaps
"""


def _category_counts(
    session: Session, ref: tuple[str, str], cur: tuple[str, str]
) -> tuple[dict[str, int], dict[str, int]]:
    (ref_relation, ref_column), (cur_relation, cur_column) = ref, cur
    found = session.rows(
        f"""
SELECT k, sum(r), count(*) - sum(r) FROM (
    SELECT {ref_column} AS k, 1 AS r FROM {ref_relation} WHERE {ref_column} IS NOT NULL
    UNION ALL
    SELECT {cur_column} AS k, 0 AS r FROM {cur_relation} WHERE {cur_column} IS NOT NULL
) AS sides GROUP BY k"""
    )
    reference = {str(k): int(r) for k, r, _ in found if r}
    current = {str(k): int(c) for k, _, c in found if c}
    return reference, current
