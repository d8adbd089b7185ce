"""The bootstrap's weighted metrics equal scikit-learn's on the resampled rows."""

import numpy as np
import pytest
from sklearn import metrics as skm

from gristmill.definitions.models import Task
from gristmill.execution.ml.metrics import _Weighted, evaluate, metric_functions


def _data(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    scores = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.2, n), 0.001, 0.999)
    scores = np.round(scores, 2)  # plenty of ties
    return y, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampled_classification_metrics_equal_scikit_learn(seed: int) -> None:
    y, scores = _data(seed)
    functions = metric_functions(Task.CLASSIFICATION, 0.3)
    weighted = _Weighted(Task.CLASSIFICATION, y, scores, 0.3)
    idx = np.random.default_rng(seed + 10).integers(0, len(y), len(y))
    got = weighted.metrics(np.bincount(idx, minlength=len(y)).astype(float))
    assert got is not None
    for name, fn in functions.items():
        assert got[name] == pytest.approx(fn(y[idx], scores[idx]), abs=1e-9), name


def test_resampled_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(10, 3, 1000)
    pred = y + rng.normal(0, 1, 1000)
    idx = rng.integers(0, 1000, 1000)
    got = _Weighted(Task.REGRESSION, y, pred, 0.5).metrics(
        np.bincount(idx, minlength=1000).astype(float)
    )
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y[idx], pred[idx]), abs=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y[idx], pred[idx]), abs=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y[idx], pred[idx]), abs=1e-9)


def test_intervals_are_seeded_and_contain_the_value() -> None:
    y, scores = _data(7)
    first = evaluate(Task.CLASSIFICATION, y, scores, threshold=0.3, resamples=100, seed=1)
    again = evaluate(Task.CLASSIFICATION, y, scores, threshold=0.3, resamples=100, seed=1)
    other = evaluate(Task.CLASSIFICATION, y, scores, threshold=0.3, resamples=100, seed=2)
    assert first == again and first != other
    auc = first["roc_auc"]
    assert auc["value"] == skm.roc_auc_score(y, scores)
    assert auc["low"] < auc["value"] < auc["high"]
