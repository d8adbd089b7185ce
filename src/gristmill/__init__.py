"""Gristmill: the ML engineer's last mile in one Python package.

Project modules use the declarative API below::

    import gristmill as gm

    transactions = gm.source("transactions", "data/transactions/*.csv",
                             columns={"txn_id": "VARCHAR", "amount": "DOUBLE"},
                             checks=[gm.not_null("txn_id"), gm.unique("txn_id"),
                                     gm.in_range("amount", min=0)])
"""

from gristmill.definitions.contracts import (
    accepted_values,
    in_range,
    matches,
    not_null,
    row_count,
    unique,
)
from gristmill.definitions.models import (
    features,
    kfold,
    lightgbm,
    model,
    sklearn,
    time_split,
    training_set,
    xgboost,
)
from gristmill.definitions.monitors import (
    drift_monitor,
    performance_monitor,
    quality_monitor,
    retrain,
)
from gristmill.definitions.objects import feature_view, source, table
from gristmill.definitions.schedules import retry, schedule
from gristmill.definitions.sensors import new_files, new_version, sensor
from gristmill.definitions.services import decision, service
from gristmill.errors import GristmillError, TransientError

__version__ = "0.1.0"


def open_project(path: str | None = None):  # type: ignore[no-untyped-def]
    """Open a project for reading tables from Python: ``open_project().read("t", 3)``."""
    from gristmill.workspace import Workspace

    return Workspace.open(path)


__all__ = [
    "GristmillError",
    "TransientError",
    "accepted_values",
    "decision",
    "drift_monitor",
    "performance_monitor",
    "quality_monitor",
    "retrain",
    "retry",
    "schedule",
    "sensor",
    "new_files",
    "new_version",
    "feature_view",
    "features",
    "kfold",
    "lightgbm",
    "model",
    "sklearn",
    "time_split",
    "training_set",
    "xgboost",
    "in_range",
    "matches",
    "not_null",
    "open_project",
    "row_count",
    "service",
    "source",
    "table",
    "unique",
]
