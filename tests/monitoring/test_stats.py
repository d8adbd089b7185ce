"""Drift statistics equal scipy's on the same samples; injected drift is found, none is
reported on samples from the same distribution (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import special, stats
from scipy.spatial import distance

from gristmill.execution.monitoring import stats as s
from gristmill.execution.monitoring.drift import findings
from gristmill.execution.monitoring.findings import State

TOL = 1e-9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_numeric_statistics_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(0, 1, 5_000 + seed * 777), 2)  # rounded: many ties
    b = np.round(rng.normal(0.2, 1.3, 4_000), 2)
    values, histogram = s.numeric(a, b)
    ks = stats.ks_2samp(a, b, method="asymp")
    assert values["ks"] == pytest.approx(ks.statistic, abs=TOL)
    assert values["ks_p"] == pytest.approx(ks.pvalue, abs=TOL)
    assert values["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b), rel=TOL)
    r, c = np.array(histogram["reference"]), np.array(histogram["current"])
    assert values["jensenshannon"] == pytest.approx(distance.jensenshannon(r, c), abs=TOL)
    expected_psi = float(np.sum(special.rel_entr(c, r) + special.rel_entr(r, c)))
    assert values["psi"] == pytest.approx(expected_psi, rel=TOL)
    # the bins are the reference's deciles
    assert r == pytest.approx(np.full(10, 0.1), abs=0.01)


def test_ks_p_value_is_scipys_and_within_tiny_p_of_it_in_the_far_tail() -> None:
    from scipy.stats import kstwo

    exact = tail = 0
    for n in (50.0, 700.0, 5_000.0, 120_000.0):
        for d in np.linspace(0.001, 0.6, 40):
            expected = float(kstwo.sf(d, n))
            if 2 * np.exp(-2 * n * d * d) >= s.TINY_P:
                assert s.ks_p_value(d, n) == expected
                exact += 1
            else:  # the bound, which holds for every n: never below scipy's value
                assert expected <= s.ks_p_value(d, n) < s.TINY_P
                tail += 1
    assert exact > 20 and tail > 20


def test_categorical_statistics_equal_scipy() -> None:
    rng = np.random.default_rng(5)
    ref = rng.choice(["a", "b", "c", "d"], 6_000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(["a", "b", "c", "d", "e"], 5_000, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    values, histogram = s.categorical(pa.array(ref), pa.array(cur))
    categories = histogram["categories"]
    table = np.array(
        [[np.sum(ref == k) for k in categories], [np.sum(cur == k) for k in categories]]
    )
    chi = stats.chi2_contingency(table, correction=False)
    assert values["chi2"] == pytest.approx(chi.statistic, rel=TOL)
    assert values["chi2_p"] == pytest.approx(chi.pvalue, rel=TOL, abs=1e-300)
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    assert values["jensenshannon"] == pytest.approx(distance.jensenshannon(p, q), abs=TOL)
    # "e" is new: ~10% of the current rows, and PSI takes it as EPSILON in the reference
    assert values["new_categories"] == pytest.approx(np.mean(cur == "e"), abs=TOL)
    r = np.where(p > 0, p, s.EPSILON)
    assert values["psi"] == pytest.approx(float(np.sum((q - r) * np.log(q / r))), rel=TOL)


def test_null_rates_count_nulls_and_nan() -> None:
    ref = pa.chunked_array([[1.0, 2.0, None, 4.0]])
    cur = pa.chunked_array([[1.0, float("nan"), None, None]])
    drift = s.column_drift("x", ref, cur)
    assert drift.values["null_rate_reference"] == 0.25
    assert drift.values["null_rate_current"] == 0.75
    assert drift.values["null_rate"] == 0.5


def _pairs(reference: pa.Table, current: pa.Table):
    return ((name, reference[name], current[name]) for name in reference.column_names)


def _frame(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    return pa.table(
        {
            "amount": rng.lognormal(3 + shift, 0.6, n),
            "count": rng.poisson(5 + 5 * shift, n),
            "channel": rng.choice(
                ["web", "mobile", "store"], n, p=[0.45 - shift, 0.4 + shift, 0.15]
            ),
        }
    )


def test_injected_drift_alerts_and_undrifted_data_does_not() -> None:
    rng = np.random.default_rng(11)
    reference = _frame(rng, 20_000, 0.0)
    same = _frame(rng, 5_000, 0.0)
    shifted = _frame(rng, 5_000, 0.3)
    thresholds = {"psi": 0.2, "ks": 0.1, "null_rate": 0.1, "new_categories": 0.01}
    quiet, _ = findings(_pairs(reference, same), thresholds)
    loud, charts = findings(_pairs(reference, shifted), thresholds)
    assert [f.describe() for f in quiet if f.state is State.ALERT] == []
    alerting = {(f.subject, f.statistic) for f in loud if f.state is State.ALERT}
    assert {("amount", "psi"), ("count", "psi"), ("channel", "psi")} <= alerting
    assert charts["channel"]["categories"] == ["mobile", "store", "web"]


def test_1m_rows_by_20_columns_need_less_than_the_columns_themselves() -> None:
    """Columns are compared one at a time: what the statistics allocate (numpy, traced)
    stays under the size of the 20 columns of one side."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 1_000_000
    reference = pa.table({f"x{i}": rng.normal(size=n) for i in range(20)})
    current = pa.table({f"x{i}": rng.normal(0.01 * i, 1, n) for i in range(20)})
    tracemalloc.start()
    found, _ = findings(_pairs(reference, current), {"psi": 0.2})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len({f.subject for f in found}) == 20
    assert peak < reference.nbytes


def test_columns_read_one_at_a_time_from_the_engine_give_the_same_findings(tmp_path) -> None:
    """The monitors' path: each column pair is scanned from the engine on its own."""
    import pyarrow.parquet as pq

    from gristmill.execution.engines.duckdb.engine import DuckDBEngine
    from gristmill.execution.monitoring.drift import column_pairs

    rng = np.random.default_rng(5)
    reference = _frame(rng, 20_000, 0.0)
    current = _frame(rng, 5_000, 0.2)
    pq.write_table(reference, tmp_path / "reference.parquet")
    pq.write_table(current, tmp_path / "current.parquet")
    thresholds = {"psi": 0.2, "ks": 0.1}
    expected, expected_charts = findings(_pairs(reference, current), thresholds)
    engine = DuckDBEngine(temp_directory=tmp_path / "tmp")
    with engine.session() as session:
        session.register_parquet("ref", [str(tmp_path / "reference.parquet")])
        session.register_parquet("cur", [str(tmp_path / "current.parquet")])
        found, charts = findings(
            column_pairs(session, "ref", "cur", reference.column_names), thresholds
        )
    engine.close()
    assert [(f.subject, f.statistic, f.value) for f in found] == [
        (f.subject, f.statistic, f.value) for f in expected
    ]
    assert charts == expected_charts
    assert {f.subject for f in found if f.state is State.ALERT} == {"amount", "count"}


def test_closing_the_pairs_early_waits_for_the_read_ahead(tmp_path) -> None:
    """A caller that stops after one pair (an error, say) closes the generator; its
    reading thread is finished before the session may close."""
    import threading

    import pyarrow.parquet as pq

    from gristmill.execution.engines.duckdb.engine import DuckDBEngine
    from gristmill.execution.monitoring.drift import column_pairs

    table = _frame(np.random.default_rng(1), 50_000, 0.0)
    pq.write_table(table, tmp_path / "t.parquet")
    engine = DuckDBEngine(temp_directory=tmp_path / "tmp")
    with engine.session() as session:
        session.register_parquet("t", [str(tmp_path / "t.parquet")])
        pairs = column_pairs(session, "t", "t", table.column_names)
        name, reference, current = next(pairs)
        assert (name, len(reference), len(current)) == ("amount", 50_000, 50_000)
        assert any(t.name.startswith("gristmill-drift") for t in threading.enumerate())
        pairs.close()
        assert not any(t.name.startswith("gristmill-drift") for t in threading.enumerate())
        assert session.rows("SELECT count(*) FROM t") == [(50_000,)]
    engine.close()
