"""Gates: parsed at load time, checked against a candidate and the champion."""

from pathlib import Path

import pytest

from gristmill.definitions.gates import parse_gate
from gristmill.definitions.models import CLASSIFICATION_METRICS
from gristmill.errors import DefinitionError, Location

HERE = Location(Path("pipeline.py"), 7)


def metrics(**values: float) -> dict[str, dict[str, float]]:
    return {k: {"value": v, "low": v - 0.02, "high": v + 0.02} for k, v in values.items()}


def check(text: str, candidate: dict, champion: dict | None = None):  # type: ignore[no-untyped-def]
    gate = parse_gate(text, CLASSIFICATION_METRICS, HERE)
    return gate.check(candidate, {"champion": champion})


def test_absolute_and_relative_gates() -> None:
    assert check("roc_auc >= 0.70", metrics(roc_auc=0.71)).passed
    assert not check("roc_auc >= 0.70", metrics(roc_auc=0.69)).passed
    relative = "roc_auc >= champion.roc_auc - 0.005"
    assert check(relative, metrics(roc_auc=0.796), metrics(roc_auc=0.80)).passed
    result = check(relative, metrics(roc_auc=0.794), metrics(roc_auc=0.80))
    assert not result.passed and result.right == pytest.approx(0.795)
    assert check(
        "log_loss <= champion.log_loss", metrics(log_loss=0.3), metrics(log_loss=0.31)
    ).passed


def test_interval_bounds_and_a_missing_champion() -> None:
    assert not check("roc_auc.low >= 0.70", metrics(roc_auc=0.71)).passed  # low is 0.69
    result = check("roc_auc > champion.roc_auc", metrics(roc_auc=0.5), None)
    assert result.passed and "no champion" in result.detail


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("roc_auc = 0.7", "not a comparison"),
        ("auc >= 0.7", "unknown metric 'auc'"),
        ("roc_auc >= champion.auc", "unknown metric 'auc'"),
        ("champion.roc_auc >= 0.7", "the left side is the candidate"),
        ("roc_auc >= pr_auc", "compare with a number or champion"),
        ("roc_auc >= champion.roc_auc * 0.9", "expected a metric name"),
        ("roc_auc >= champion.roc_auc - margin", "the margin must be a number"),
        ("0.7 <= roc_auc <= 0.9", "not a single comparison"),
        ("roc_auc.mean >= 0.7", "a metric part is one of low, high"),
        ("__import__('os') >= 1", "expected a metric name"),
    ],
)
def test_bad_gates_fail_at_load_time_with_the_location(text: str, why: str) -> None:
    with pytest.raises(DefinitionError, match=why) as info:
        parse_gate(text, CLASSIFICATION_METRICS, HERE)
    assert info.value.location == HERE
    assert "metrics: roc_auc" in info.value.hint
