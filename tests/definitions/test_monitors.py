"""Monitor definitions are checked where they are written: name, window, min_rows,
statistics and metrics, with the file and line of the call."""

from __future__ import annotations

from datetime import timedelta

import pytest

import gristmill as gm
from gristmill.errors import DefinitionError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: gm.drift_monitor("d", service="s", window="0d"), "longer than zero"),
        (lambda: gm.drift_monitor("d", service="s", min_rows=0), "min_rows must be 1 or more"),
        (
            lambda: gm.drift_monitor("d", service="s", thresholds={"psii": 0.2}),
            "unknown statistic(s) psii",
        ),
        (
            lambda: gm.performance_monitor(
                "p", service="s", labels="l", label="y", timestamp="t", metric="auc"
            ),
            "unknown metric 'auc'",
        ),
        (
            lambda: gm.performance_monitor(
                "p", service="s", labels="l", label="y", timestamp="t", min_rows=0
            ),
            "min_rows must be 1 or more",
        ),
        (lambda: gm.drift_monitor("bad name!", service="s"), "bad name!"),
    ],
)
def test_bad_monitor_definitions_say_what_and_where(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(DefinitionError) as caught:
        make()
    assert message in caught.value.message
    assert caught.value.location is not None
    assert caught.value.location.path.name == "test_monitors.py"


def test_service_monitors_keep_their_common_fields() -> None:
    drift = gm.drift_monitor(
        "d", service="churn", window="2d", min_rows=5, webhook="http://x", description="why"
    )
    performance = gm.performance_monitor(
        "p", service="churn", labels="l", label="y", timestamp="t", window="3d", min_rows=7
    )
    assert (drift.name, drift.service, drift.window, drift.min_rows) == (
        "d",
        "churn",
        timedelta(days=2),
        5,
    )
    assert (drift.webhook, drift.description) == ("http://x", "why")
    assert (performance.service, performance.window, performance.min_rows) == (
        "churn",
        timedelta(days=3),
        7,
    )
    assert dict(drift.thresholds) == {"psi": 0.2, "null_rate": 0.1, "new_categories": 0.01}
