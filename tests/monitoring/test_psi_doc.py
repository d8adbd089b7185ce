"""The PSI recipe in docs/monitoring.md recomputes what a drift monitor stored."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from tests.conftest import built_example

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "docs" / "monitoring.md"


def _recipe() -> dict[str, object]:
    section = DOC.read_text().split("### How PSI is computed, exactly", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, object] = {}
    exec(code, namespace)  # noqa: S102 - the documentation's own code
    return namespace


def test_the_documented_recipe_recomputes_the_stored_psi(tmp_path: Path) -> None:
    ws = built_example(tmp_path / "demo", scale="tiny", seed=3)
    (evaluation,) = ws.monitors.run(["churn_drift"])
    assert evaluation.state in ("ok", "alert")
    psi = _recipe()["psi"]
    champion = ws.models.version("churn", "champion")
    reference = ws.read("churn_training", champion.training_set_version)
    current = ws.read("churn_training")
    start = pc.max(current["label_ts"]).as_py() - timedelta(days=30)
    current = current.filter(pc.greater(current["label_ts"], start))
    left_closed_differs = 0
    for column in ("txn_count_30d", "logins_30d", "event_count_7d", "amount_avg_90d"):
        (stored,) = ws.monitors.results("churn_drift", subject=column, statistic="psi")
        ref = pc.cast(reference[column], "double").to_numpy(zero_copy_only=False)
        cur = pc.cast(current[column], "double").to_numpy(zero_copy_only=False)
        assert psi(ref, cur) == pytest.approx(stored.value, abs=1e-12), column
        left_closed_differs += abs(_left_closed(ref, cur) - stored.value) > 1e-3
    assert left_closed_differs  # the side a tie falls on matters: hence the doc
    ws.close()


def _left_closed(reference: np.ndarray, current: np.ndarray) -> float:
    """The same PSI with bins closed on the left, as np.histogram would make them."""
    ref, cur = (np.sort(x[~np.isnan(x)]) for x in (reference, current))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r, c = (
        np.diff(np.concatenate([[0], np.searchsorted(x, edges), [x.size]])) / x.size
        for x in (ref, cur)
    )
    r, c = np.where(r > 0, r, 1e-4), np.where(c > 0, c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))
