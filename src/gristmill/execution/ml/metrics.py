"""Evaluation: scikit-learn's metrics with bootstrap 95% confidence intervals.

Point values are scikit-learn's own functions on the test predictions, so they equal
what a user computes by hand. Intervals are percentiles over ``n`` resamples of the test
rows with replacement, drawn from a seeded generator (the same seed, the same interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gristmill.definitions.models import Task

Metric = Callable[[np.ndarray, np.ndarray], float]


def _classification(threshold: float) -> dict[str, Metric]:
    from sklearn import metrics as m

    def at(fn: Callable[..., float]) -> Metric:
        return lambda y, s: float(fn(y, (s >= threshold).astype(int), zero_division=0))

    return {
        "roc_auc": lambda y, s: float(m.roc_auc_score(y, s)),
        "pr_auc": lambda y, s: float(m.average_precision_score(y, s)),
        "log_loss": lambda y, s: float(m.log_loss(y, s, labels=[0, 1])),
        "brier": lambda y, s: float(m.brier_score_loss(y, s)),
        "precision": at(m.precision_score),
        "recall": at(m.recall_score),
        "f1": at(m.f1_score),
    }


def _regression() -> dict[str, Metric]:
    from sklearn import metrics as m

    return {
        "rmse": lambda y, s: float(m.root_mean_squared_error(y, s)),
        "mae": lambda y, s: float(m.mean_absolute_error(y, s)),
        "r2": lambda y, s: float(m.r2_score(y, s)),
    }


def metric_functions(task: Task, threshold: float) -> dict[str, Metric]:
    return _classification(threshold) if task is Task.CLASSIFICATION else _regression()


def evaluate(
    task: Task,
    y: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, float | None]]:
    """metric -> {"value", "low", "high"}; bounds are None without resamples."""
    functions = metric_functions(task, threshold)
    values = {name: fn(y, scores) for name, fn in functions.items()}
    bounds = _bootstrap(task, functions, y, scores, resamples, seed)
    return {
        name: {
            "value": values[name],
            "low": bounds[name][0] if name in bounds else None,
            "high": bounds[name][1] if name in bounds else None,
        }
        for name in functions
    }


def _bootstrap(
    task: Task,
    functions: dict[str, Metric],
    y: np.ndarray,
    scores: np.ndarray,
    resamples: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    if resamples <= 0 or len(y) < 2:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        ys, ss = y[idx], scores[idx]
        if task is Task.CLASSIFICATION and ys.min() == ys.max():
            continue  # one class only: ranking metrics are undefined on this resample
        for name, fn in functions.items():
            samples[name].append(fn(ys, ss))
    return {
        name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
        for name, v in samples.items()
        if v
    }


def baseline(
    task: Task, y_train: np.ndarray, y_test: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Metrics of the constant predictor: the training prior (classification) or mean."""
    constant = float(np.mean(y_train))
    scores = np.full(len(y_test), constant)
    functions = metric_functions(task, threshold)
    values = {}
    for name, fn in functions.items():
        try:
            values[name] = fn(y_test, scores)
        except ValueError:  # e.g. ROC AUC on a single-class test set
            values[name] = None
    return {
        "predictor": "prior" if task is Task.CLASSIFICATION else "mean",
        "value": constant,
        "metrics": values,
    }


def curves(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """The calibration curve and confusion counts at the threshold (classification)."""
    if task is not Task.CLASSIFICATION:
        residuals = scores - y
        return {"residuals": {"mean": float(residuals.mean()), "std": float(residuals.std())}}
    from sklearn.calibration import calibration_curve

    true, predicted = calibration_curve(y, scores, n_bins=10, strategy="uniform")
    bins = np.clip((scores * 10).astype(int), 0, 9)
    counts = np.bincount(bins, minlength=10)
    decided = scores >= threshold
    return {
        "calibration": {
            "predicted": [round(float(v), 6) for v in predicted],
            "observed": [round(float(v), 6) for v in true],
            "counts": [int(c) for c in counts if c],
        },
        "confusion": {
            "threshold": threshold,
            "tp": int(np.sum(decided & (y == 1))),
            "fp": int(np.sum(decided & (y == 0))),
            "tn": int(np.sum(~decided & (y == 0))),
            "fn": int(np.sum(~decided & (y == 1))),
        },
    }
