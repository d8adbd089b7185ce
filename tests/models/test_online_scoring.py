"""One TreeSHAP call gives the online score too: equal to LightGBM's own to 1e-12."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from gristmill.definitions.models import Task
from gristmill.execution.ml.estimators import LightGBMBackend
from gristmill.execution.ml.features import Feature, FeatureKind


@pytest.mark.parametrize(
    ("objective", "task"),
    [
        ({"objective": "binary"}, Task.CLASSIFICATION),
        ({"objective": "binary", "sigmoid": 0.7}, Task.CLASSIFICATION),
        ({"objective": "regression"}, Task.REGRESSION),
        ({"objective": "huber"}, Task.REGRESSION),
        ({"objective": "poisson"}, Task.REGRESSION),  # exp link: LightGBM's own score
    ],
)
def test_score_from_contributions_equals_lightgbms(objective: dict, task: Task) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2_000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    signal = np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 1]) + 0.1 * rng.normal(size=2_000)
    y = (signal > 0).astype(float) if task is Task.CLASSIFICATION else np.exp(signal / 2)
    params = {**objective, "num_leaves": 4, "verbose": -1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=150)
    features = [Feature(f"f{i}", FeatureKind.NUMERIC) for i in range(6)]
    backend = LightGBMBackend(task, features)
    for row in x[:300]:
        row = row.reshape(1, -1)
        score, contributions = backend.score_and_contributions(booster, row)
        assert score == pytest.approx(backend.predict_row(booster, row), abs=1e-12, rel=1e-12)
        assert score == pytest.approx(booster.predict(row)[0], abs=1e-12, rel=1e-12)
        assert contributions is not None
        np.testing.assert_array_equal(contributions, backend.contributions(booster, row))


def test_lightgbm_for_scoring_is_imported_without_scikit_learn() -> None:
    """Serving processes import LightGBM without its scikit-learn wrappers (2.8 s of start
    here); boosters train and score the same, and scikit-learn stays importable."""
    import subprocess
    import sys

    code = """
import sys
from gristmill.execution.ml.estimators import import_lightgbm_for_scoring
import_lightgbm_for_scoring()
assert "sklearn" not in sys.modules and "scipy.stats" not in sys.modules
import lightgbm as lgb, numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 3)); y = (x[:, 0] > 0).astype(float)
booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 5)
again = lgb.Booster(model_str=booster.model_to_string())
assert (again.predict(x) == booster.predict(x)).all()
import sklearn.metrics
print(round(float(sklearn.metrics.roc_auc_score(y, again.predict(x))), 3))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) > 0.9
