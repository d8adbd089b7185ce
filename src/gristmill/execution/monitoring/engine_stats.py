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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Side:
    relation: str
    column: str
    floating: bool
    """A FLOAT or DOUBLE column: NaN counts as missing."""

    @property
    def value(self) -> str:
        return f"CAST({q(self.column)} AS DOUBLE)"

    @property
    def missing(self) -> str:
        nan = f" OR isnan({q(self.column)})" if self.floating else ""
        return f"{q(self.column)} IS NULL{nan}"

    def present_value(self) -> str:
        """The value where it counts (NULL where it is missing), for aggregates."""
        return f"CASE WHEN {self.missing} THEN NULL ELSE {self.value} END"


def column_drift(
    session: Session,
    name: str,
    reference: tuple[str, str],
    current: tuple[str, str],
    kind: Kind,
) -> ColumnDrift:
    """Every statistic of one column: ``reference`` and ``current`` are (relation, column).
    Two queries for a numeric column, one for a categorical one."""
    ref, cur = _side(session, *reference), _side(session, *current)
    if kind is Kind.NUMERIC:
        summary, counts = _numeric_summary(session, ref, cur)
        values, histogram = numeric_statistics(summary)
    else:
        ref_counts, cur_counts, counts = _category_counts(session, ref, cur)
        values, histogram = categorical_statistics(ref_counts, cur_counts)
    (ref_rows, ref_missing), (cur_rows, cur_missing) = counts
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


Counts = tuple[tuple[int, int], tuple[int, int]]
"""Per side (reference, current): its rows, and how many are missing (null, or NaN)."""


def _side(session: Session, relation: str, column: str) -> _Side:
    kind = dict(session.columns(relation)).get(column, "").upper()
    return _Side(relation, column, kind in ("FLOAT", "DOUBLE", "REAL"))


def _numeric_summary(session: Session, ref: _Side, cur: _Side) -> tuple[NumericSummary, Counts]:
    value = ref.present_value()
    deciles = ", ".join(f"quantile_cont({value}, {i / BINS})" for i in range(1, BINS))
    ((rows, missing, spread, low, high, *quantiles),) = session.rows(
        f"SELECT count(*), count_if({ref.missing}), stddev_pop({value}), min({value}), "
        f"max({value}), {deciles} FROM {q(ref.relation)}"
    )
    n_ref = int(rows) - int(missing)
    edges = [float(e) for e in np.unique(np.array(quantiles, dtype=np.float64))] if n_ref else []
    bins: dict[int, tuple[int, int]] = {}
    gaps = (0.0, 0.0, 0.0)
    cur_counts = (0, 0)
    for kind, b, first, second, third in session.rows(_ecdf_sql(ref, cur, edges)):
        if kind == "bin":
            bins[int(b)] = (int(first), int(second))
        elif kind == "ecdf":
            gaps = (float(first or 0), float(second or 0), float(third or 0))
        else:
            cur_counts = (int(first), int(second or 0))
    n_cur = cur_counts[0] - cur_counts[1]
    counts = ((int(rows), int(missing)), cur_counts)
    if n_ref == 0 or n_cur == 0:
        empty = np.empty(0)
        return NumericSummary(n_ref, n_cur, [], empty, empty, 0, 0, 0, 0, 0, 0), counts
    ref_share = np.array([bins.get(b, (0, 0))[0] for b in range(len(edges) + 1)]) / n_ref
    cur_share = np.array([bins.get(b, (0, 0))[1] for b in range(len(edges) + 1)]) / n_cur
    summary = NumericSummary(
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
    return summary, counts


def _double(value: float) -> str:
    """A DOUBLE literal that reads back as exactly ``value`` on every engine."""
    return f"CAST('{value!r}' AS DOUBLE)"


def _ecdf_sql(ref: _Side, cur: _Side, edges: Sequence[float]) -> str:
    """Rows ('bin', b, reference rows, current rows, NULL) per decile bin; one row
    ('ecdf', NULL, max gap, min gap, Wasserstein) where gap = F_reference - F_current;
    and one ('current', NULL, rows, missing rows, NULL) of the current side."""
    bin_of = (
        "CASE "
        + " ".join(f"WHEN v <= {_double(e)} THEN {i}" for i, e in enumerate(edges))
        + f" ELSE {len(edges)} END"
        if edges
        else "0"
    )
    running = "ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    before = "ORDER BY b ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    return f"""
WITH sides AS (
    SELECT {ref.value} AS v, 1 AS r FROM {q(ref.relation)} WHERE NOT ({ref.missing})
    UNION ALL
    SELECT {cur.value} AS v, 0 AS r FROM {q(cur.relation)} WHERE NOT ({cur.missing})
), counted AS (
    SELECT v, sum(r) AS r, count(*) - sum(r) AS c FROM sides GROUP BY v
), binned AS (
    SELECT v, r, c, {bin_of} AS b FROM counted
), totals AS (
    SELECT b, sum(r) AS r, sum(c) AS c, min(v) AS lowest FROM binned GROUP BY b
), offsets AS (
    SELECT b,
           sum(r) OVER ({before}) - r AS r_before,
           sum(c) OVER ({before}) - c AS c_before,
           sum(r) OVER () AS n_r,
           sum(c) OVER () AS n_c,
           lead(lowest) OVER (ORDER BY b) AS next_lowest
    FROM totals
), running AS (
    SELECT b, v,
           sum(r) OVER (PARTITION BY b {running}) AS r_upto,
           sum(c) OVER (PARTITION BY b {running}) AS c_upto,
           lead(v) OVER (PARTITION BY b ORDER BY v) AS next_v
    FROM binned
), gaps AS (
    SELECT CAST(o.r_before + u.r_upto AS DOUBLE) / CAST(o.n_r AS DOUBLE)
           - CAST(o.c_before + u.c_upto AS DOUBLE) / CAST(o.n_c AS DOUBLE) AS gap,
           coalesce(u.next_v, o.next_lowest) - u.v AS width
    FROM running AS u JOIN offsets AS o ON u.b = o.b
    WHERE o.n_r > 0 AND o.n_c > 0
)
SELECT 'bin' AS kind, b, CAST(r AS DOUBLE) AS first, CAST(c AS DOUBLE) AS second,
       CAST(NULL AS DOUBLE) AS third
FROM totals
UNION ALL
SELECT 'ecdf', NULL, max(gap), min(gap), sum(abs(gap) * width) FROM gaps
UNION ALL
SELECT 'current', NULL, CAST(count(*) AS DOUBLE), CAST(count_if({cur.missing}) AS DOUBLE),
       NULL
FROM {q(cur.relation)}
"""


def _category_counts(
    session: Session, ref: _Side, cur: _Side
) -> tuple[dict[str, int], dict[str, int], Counts]:
    """Each side's rows per category, and its rows and missing rows, in one query."""
    found = session.rows(
        f"""
SELECT k, sum(r), count(*) - sum(r) FROM (
    SELECT {q(ref.column)} AS k, 1 AS r FROM {q(ref.relation)}
    UNION ALL
    SELECT {q(cur.column)} AS k, 0 AS r FROM {q(cur.relation)}
) AS sides GROUP BY k"""
    )
    reference = {str(k): int(r) for k, r, _ in found if r and k is not None}
    current = {str(k): int(c) for k, _, c in found if c and k is not None}
    missing = [(int(r), int(c)) for k, r, c in found if k is None] or [(0, 0)]
    counts = (
        (sum(int(r) for _, r, _ in found), missing[0][0]),
        (sum(int(c) for _, _, c in found), missing[0][1]),
    )
    return reference, current, counts
