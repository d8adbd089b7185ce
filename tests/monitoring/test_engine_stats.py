"""Drift statistics aggregated by the engine (what Spark's monitors compute) equal the ones
computed in this process from the columns (``stats.column_drift``, which test_stats checks
against scipy), to 1e-9, on real DuckDB and real Spark: ties, NaN, nulls, integers,
decimals, booleans, new categories, a current side with no values, one value only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gristmill.execution.engines import Session, create_engine
from gristmill.execution.monitoring import drift
from gristmill.execution.monitoring.stats import column_drift

TOL = 1e-9


def _frame(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    amount = np.round(rng.lognormal(3 + shift, 0.6, n), 1)  # rounded: many ties
    amount[rng.random(n) < 0.03] = np.nan
    amount_mask = rng.random(n) < 0.02
    return pa.table(
        {
            "amount": pa.array(amount, mask=amount_mask),
            "count": pa.array(rng.poisson(5 + 5 * shift, n), pa.int64()),
            "price": pa.array(
                [Decimal(int(v)) / 100 for v in rng.integers(100, 5_000 + int(shift * 900), n)],
                pa.decimal128(10, 2),
            ),
            "channel": pa.array(
                rng.choice(["web", "mobile", "store", "kiosk"][: 3 + (shift > 0)], n),
                mask=rng.random(n) < 0.05,
            ),
            "active": pa.array(rng.random(n) < 0.6 + shift / 2),
            "small": pa.array(rng.normal(shift, 1e-7, n)),  # widths near the float's spacing
            "gone": pa.array([None] * n if shift else rng.normal(size=n).tolist(), pa.float64()),
            "flat": pa.array(np.full(n, 7.0) if shift else rng.normal(7, 1, n)),
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    folder = tmp_path_factory.mktemp("drift")
    rng = np.random.default_rng(21)
    reference, current = _frame(rng, 6_000, 0.0), _frame(rng, 2_500, 0.3)
    for name, table in (("reference", reference), ("current", current)):
        (folder / name).mkdir()
        half = table.num_rows // 2  # two files a side: the engines read several
        pq.write_table(table.slice(0, half), folder / name / "a.parquet")
        pq.write_table(table.slice(half), folder / name / "b.parquet")
    return folder, reference, current


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def session(request: pytest.FixtureRequest, data: Any, tmp_path_factory: Any) -> Iterator[Session]:
    folder = data[0]
    if request.param == "spark":
        engine = create_engine("spark", master="local[2]")
    else:
        engine = create_engine("duckdb", temp_directory=tmp_path_factory.mktemp("spill"))
    try:
        with engine.session() as session:
            for name in ("reference", "current"):
                session.register_parquet(name, sorted(str(p) for p in (folder / name).iterdir()))
            yield session
    finally:
        engine.close()


def _close(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return ours == pytest.approx(theirs, rel=TOL, abs=TOL)


def test_engine_aggregates_give_the_statistics_computed_from_the_columns(
    session: Session, data: Any
) -> None:
    _, reference, current = data
    names = reference.column_names
    found = {d.column: d for d in drift.engine_drifts(session, "reference", "current", names)}
    assert list(found) == names
    for name in names:
        ours, theirs = found[name], column_drift(name, reference[name], current[name])
        assert (ours.kind, ours.reference_rows, ours.current_rows) == (
            theirs.kind,
            theirs.reference_rows,
            theirs.current_rows,
        ), name
        assert ours.values.keys() == theirs.values.keys(), name
        wrong = {
            k: (ours.values[k], theirs.values[k])
            for k in theirs.values
            if not _close(ours.values[k], theirs.values[k])
        }
        assert not wrong, (name, wrong)
        assert ours.histogram.keys() == theirs.histogram.keys(), name
        for key, expected in theirs.histogram.items():
            if key == "categories":
                assert ours.histogram[key] == expected, name
            else:
                assert ours.histogram[key] == pytest.approx(expected, rel=TOL, abs=TOL), name
    # the cases the data was built for
    assert found["channel"].values["new_categories"] > 0.2
    assert found["active"].histogram["categories"] == ["False", "True"]
    assert math.isnan(found["gone"].values["ks"]) and found["gone"].values["null_rate"] == 1.0
    assert found["flat"].values["wasserstein"] > 0.5 and found["price"].values["ks"] > 0.05
    assert found["amount"].values["null_rate_reference"] > 0.04  # nulls and NaN


def test_engine_aggregates_of_identical_sides_show_no_drift(session: Session) -> None:
    (same,) = drift.engine_drifts(session, "reference", "reference", ["amount"])
    assert same.values["ks"] == 0 and same.values["wasserstein"] == 0
    assert same.values["psi"] == 0 and same.values["ks_p"] == 1
