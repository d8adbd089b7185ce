"""Drift statistics between a reference and a current sample of one column.

Numeric columns: population stability index (PSI) and Jensen-Shannon distance over the
reference's decile bins, the two-sample Kolmogorov-Smirnov statistic with its asymptotic
p-value, and the Wasserstein-1 distance (raw, and divided by the reference's standard
deviation so one threshold fits every unit). Categorical columns: PSI, Jensen-Shannon
distance and the chi-square test of homogeneity over the categories, plus the share of
current rows whose category the reference never had. Both: null rates.

Each column is sorted once per side and every statistic is read off the sorted arrays,
so the memory is a small multiple of one column, never of the table. The values equal
scipy's (``ks_2samp``, ``wasserstein_distance``, ``chi2_contingency``,
``spatial.distance.jensenshannon``; PSI is ``sum(rel_entr(c, r) + rel_entr(r, c))``),
which the tests check to 1e-9.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import kstwo

BINS = 10
EPSILON = 1e-4
"""Stands in for an empty bin's share in PSI (log of zero otherwise)."""
TINY_P = 1e-12
"""KS p-values known to be below this are not computed exactly (see ``ks_p_value``)."""


NUMERIC_STATISTICS = ("psi", "jensenshannon", "ks", "ks_p", "wasserstein", "wasserstein_norm")
CATEGORICAL_STATISTICS = ("psi", "jensenshannon", "chi2", "chi2_p", "new_categories")


class Kind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class ColumnDrift:
    """Every statistic of one column; ``values`` maps a statistic's name to its value."""

    column: str
    kind: Kind
    reference_rows: int
    current_rows: int
    values: dict[str, float]
    histogram: dict[str, Any] = field(default_factory=dict)
    """Bins (edges or categories) with reference and current shares, for charts."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind.value,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "values": self.values,
            "histogram": self.histogram,
        }


def column_drift(name: str, reference: pa.ChunkedArray, current: pa.ChunkedArray) -> ColumnDrift:
    """All statistics of one column; its kind follows the reference's Arrow type."""
    kind = Kind.NUMERIC if _is_numeric(reference.type) else Kind.CATEGORICAL
    if kind is Kind.NUMERIC:
        values, histogram = numeric(_floats(reference), _floats(current))
    else:
        values, histogram = categorical(reference, current)
    return with_null_rates(
        ColumnDrift(
            column=name,
            kind=kind,
            reference_rows=len(reference),
            current_rows=len(current),
            values=values,
            histogram=histogram,
        ),
        _null_rate(reference),
        _null_rate(current),
    )


def with_null_rates(drift: ColumnDrift, reference: float, current: float) -> ColumnDrift:
    """``drift`` with the null rates of both sides (NaN counts as null) and their gap."""
    nulls = {
        "null_rate_reference": reference,
        "null_rate_current": current,
        "null_rate": abs(current - reference),
    }
    return replace(drift, values={**drift.values, **nulls})


@dataclass(frozen=True)
class NumericSummary:
    """What every numeric statistic is read off: both sides' shares of the reference's
    decile bins, the two empirical CDFs' largest gaps and the area between them."""

    reference_rows: int
    current_rows: int
    """Values without nulls and NaN, per side."""
    edges: list[float]
    """Inner bin edges (the reference's distinct deciles)."""
    reference_share: np.ndarray
    current_share: np.ndarray
    gap_high: float
    """max(F_reference - F_current) over every value."""
    gap_low: float
    """min(F_reference - F_current)."""
    wasserstein: float
    spread: float
    """The reference's standard deviation (population)."""
    low: float
    high: float
    """The reference's smallest and largest value."""


def numeric(reference: np.ndarray, current: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    """Statistics of two numeric samples without nulls (NaN)."""
    if reference.size == 0 or current.size == 0:
        return _empty(NUMERIC_STATISTICS)
    ref = np.sort(reference)
    cur = np.sort(current)
    edges = _quantile_edges(ref)
    gap_high, gap_low, wasserstein = _ecdf_statistics(ref, cur)
    summary = NumericSummary(
        reference_rows=ref.size,
        current_rows=cur.size,
        edges=[float(e) for e in edges],
        reference_share=_bin_shares(ref, edges),
        current_share=_bin_shares(cur, edges),
        gap_high=gap_high,
        gap_low=gap_low,
        wasserstein=wasserstein,
        spread=float(np.std(ref)),
        low=float(ref[0]),
        high=float(ref[-1]),
    )
    return numeric_statistics(summary)


def numeric_statistics(summary: NumericSummary) -> tuple[dict[str, float], dict[str, Any]]:
    """Every numeric statistic, and the histogram, from a summary (however computed)."""
    if summary.reference_rows == 0 or summary.current_rows == 0:
        return _empty(NUMERIC_STATISTICS)
    ref_share, cur_share = summary.reference_share, summary.current_share
    ks = float(max(summary.gap_high, np.clip(-summary.gap_low, 0, 1)))
    m, n = sorted([float(summary.reference_rows), float(summary.current_rows)], reverse=True)
    wasserstein, spread = summary.wasserstein, summary.spread
    values = {
        "psi": psi(ref_share, cur_share),
        "jensenshannon": jensenshannon(ref_share, cur_share),
        "ks": ks,
        "ks_p": ks_p_value(ks, np.round(m * n / (m + n))),
        "wasserstein": wasserstein,
        "wasserstein_norm": wasserstein / spread if spread > 0 else float(wasserstein > 0),
    }
    histogram = {
        "edges": [summary.low, *summary.edges, summary.high],
        "reference": ref_share.tolist(),
        "current": cur_share.tolist(),
    }
    return values, histogram


def categorical(
    reference: pa.ChunkedArray | pa.Array, current: pa.ChunkedArray | pa.Array
) -> tuple[dict[str, float], dict[str, Any]]:
    """Statistics of two categorical samples; nulls are left out (see the null rates)."""
    return categorical_statistics(_value_counts(reference), _value_counts(current))


def categorical_statistics(
    ref_counts: Mapping[str, int], cur_counts: Mapping[str, int]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every categorical statistic, and the histogram, from each side's category counts."""
    categories = sorted(set(ref_counts) | set(cur_counts))
    r = np.array([ref_counts.get(c, 0) for c in categories], dtype=np.float64)
    c = np.array([cur_counts.get(c, 0) for c in categories], dtype=np.float64)
    if r.sum() == 0 or c.sum() == 0:
        return _empty(CATEGORICAL_STATISTICS)
    new = sum(n for k, n in cur_counts.items() if k not in ref_counts)
    statistic, p_value = chi2(r, c)
    values = {
        "psi": psi(r / r.sum(), c / c.sum()),
        "jensenshannon": jensenshannon(r / r.sum(), c / c.sum()),
        "chi2": statistic,
        "chi2_p": p_value,
        "new_categories": new / c.sum(),
    }
    histogram = {
        "categories": categories,
        "reference": (r / r.sum()).tolist(),
        "current": (c / c.sum()).tolist(),
    }
    return values, histogram


def psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    """Population stability index: sum((c - r) * ln(c / r)), empty shares as EPSILON."""
    r = np.where(reference_share > 0, reference_share, EPSILON)
    c = np.where(current_share > 0, current_share, EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log), as scipy.spatial.distance.jensenshannon."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    divergence = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2.0
    return float(np.sqrt(max(divergence, 0.0)))


def chi2(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of a 2 x k table of counts (no continuity correction)."""
    keep = (reference_counts + current_counts) > 0
    table = np.vstack([reference_counts[keep], current_counts[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(chi2_distribution.sf(statistic, table.shape[1] - 1))


def _ecdf_statistics(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, float]:
    """The largest and smallest gap between the two empirical CDFs (F_reference -
    F_current), and Wasserstein-1 (the area between them), from two sorted samples.

    Both empirical CDFs are read off one stable merge: at the last of each run of equal
    values, the count from the reference is a running sum of where each value came from.
    Between two such values both CDFs are flat, so KS (their largest gap) and Wasserstein
    (the area between them) need only those points. At most three arrays of the merged
    size live at once.
    """
    merged = np.concatenate([ref, cur])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a merge
    merged = merged[order]
    from_reference = np.cumsum(order < ref.size)
    del order
    # the last index of each run of equal values (inf - inf is nan, which counts as a change)
    ends = np.flatnonzero(np.diff(merged, append=np.inf))
    below = from_reference[ends]  # reference rows at or below each value
    del from_reference
    values = merged[ends]
    del merged
    ends += 1
    ends -= below  # current rows at or below each value
    gaps = below / ref.size
    del below
    gaps -= ends / cur.size
    del ends
    wasserstein = float(np.dot(np.abs(gaps[:-1]), np.diff(values)))
    return float(np.max(gaps)), float(np.min(gaps)), wasserstein


def ks_p_value(statistic: float, n: float) -> float:
    """scipy's asymptotic two-sample p-value, ``kstwo.sf(statistic, n)``.

    kstwo.sf is slow (tens of ms) far in the tail, where drifted columns live. There the
    Dvoretzky-Kiefer-Wolfowitz-Massart bound 2 exp(-2 n d^2), which holds for every n,
    is below TINY_P, so it is returned instead: within TINY_P of scipy's value.
    """
    bound = 2.0 * np.exp(-2.0 * n * statistic * statistic)
    if bound < TINY_P:
        return float(bound)
    return float(np.clip(kstwo.sf(statistic, n), 0, 1))


def _quantile_edges(sorted_reference: np.ndarray) -> np.ndarray:
    """Inner bin edges at the reference's deciles (fewer where values repeat)."""
    inner = np.quantile(sorted_reference, np.linspace(0, 1, BINS + 1)[1:-1])
    return np.unique(inner)


def _bin_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values in (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    counts = np.diff(np.concatenate([[0], cuts, [sorted_values.size]]))
    return counts / sorted_values.size


def _value_counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(values))
    keys = counts.field("values").to_pylist()
    return {str(k): int(n) for k, n in zip(keys, counts.field("counts").to_pylist(), strict=True)}


def _null_rate(values: pa.ChunkedArray | pa.Array) -> float:
    if len(values) == 0:
        return 0.0
    nulls: int = values.null_count
    if pa.types.is_floating(values.type):
        nulls += int(pc.sum(pc.is_nan(values)).as_py() or 0)  # nulls stay null, not counted twice
    return nulls / len(values)


def _floats(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Non-null values as float64 (NaN counted as null)."""
    array = pc.cast(pc.drop_null(values), pa.float64())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    out = array.to_numpy(zero_copy_only=False)
    return cast(np.ndarray, out[~np.isnan(out)])


def _is_numeric(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    ) and not pa.types.is_boolean(arrow_type)


def _empty(names: tuple[str, ...]) -> tuple[dict[str, float], dict[str, Any]]:
    return {n: float("nan") for n in names}, {}
