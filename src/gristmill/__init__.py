"""Gristmill: the ML engineer's last mile in one Python package.

Project modules use the declarative API below::

    import gristmill as gm

    transactions = gm.source("transactions", "data/transactions/*.csv",
                             columns={"txn_id": "VARCHAR", "amount": "DOUBLE"},
                             checks=[gm.not_null("txn_id"), gm.unique("txn_id"),
                                     gm.in_range("amount", min=0)])
"""

from typing import TYPE_CHECKING, Any

from gristmill.errors import GristmillError, TransientError

# The declarative API is imported on first use (``gm.source`` in a project module): the
# CLI imports this package too, and its --help must not pay for sqlglot and the models.
_API = {
    "gristmill.definitions.contracts": (
        "accepted_values",
        "connect",
        "in_range",
        "matches",
        "not_null",
        "row_count",
        "unique",
    ),
    "gristmill.definitions.models": (
        "features",
        "intake_source",
        "kfold",
        "lightgbm",
        "model",
        "sklearn",
        "time_split",
        "training_set",
        "xgboost",
    ),
    "gristmill.definitions.monitors": (
        "drift_monitor",
        "performance_monitor",
        "quality_monitor",
        "retrain",
    ),
    "gristmill.definitions.freshness": ("freshness",),
    "gristmill.definitions.pushed": ("stream_features", "window"),
    "gristmill.definitions.objects": ("feature_view", "table"),
    "gristmill.definitions.sources": (
        "database_source",
        "intake_source",
        "source",
        "stream_source",
    ),
    "gristmill.definitions.partitions": ("daily", "monthly", "static"),
    "gristmill.definitions.schedules": ("retry", "schedule"),
    "gristmill.definitions.sensors": (
        "monitor_alert",
        "new_data",
        "new_files",
        "new_version",
        "sensor",
    ),
    "gristmill.definitions.services": ("decision", "service"),
}
_HOME = {name: module for module, names in _API.items() for name in names}

if TYPE_CHECKING:
    from gristmill.definitions.contracts import (
        accepted_values,
        in_range,
        matches,
        not_null,
        row_count,
        unique,
    )
    from gristmill.definitions.freshness import freshness
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
    from gristmill.definitions.objects import feature_view, table
    from gristmill.definitions.partitions import daily, monthly, static
    from gristmill.definitions.pushed import stream_features, window
    from gristmill.definitions.schedules import retry, schedule
    from gristmill.definitions.sensors import (
        monitor_alert,
        new_data,
        new_files,
        new_version,
        sensor,
    )
    from gristmill.definitions.services import decision, service
    from gristmill.definitions.sources import (
        database_source,
        intake_source,
        source,
        stream_source,
    )


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'gristmill' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


__version__ = "0.1.0"


def open_project(path: str | None = None):  # type: ignore[no-untyped-def]
    """Open a project for reading tables from Python: ``open_project().read("t", 3)``."""
    from gristmill.workspace import Workspace

    return Workspace.open(path)


def connect(
    path: str | None = None,
    *,
    as_of: str | Any = None,
    versions: dict[str, int] | None = None,
    token: str | None = None,
) -> Any:
    """A DuckDB connection over a project's tables for a notebook: one view per table at
    the version pinned for it (latest, ``versions``, or the newest as of ``as_of``), its
    personal-data columns masked for the caller (``token``, ``GRISTMILL_TOKEN``, or the OS
    user as ``[access]`` maps it). Needs the ``query`` action (analyst and up)."""
    from gristmill.access import acting_as
    from gristmill.workspace import Workspace
    from gristmill.workspace.auth import cli_principal, key_principal

    ws = Workspace.open(path)
    try:
        from gristmill.workspace.query import parse_time

        when = parse_time(as_of) if isinstance(as_of, str) else as_of
        principal = cli_principal(ws) if token is None else key_principal(ws, token)
        with acting_as(principal):
            return ws.queries.connect(versions=versions, as_of=when)
    finally:
        ws.close()  # the views read the versions' files, not the catalog


__all__ = [
    "GristmillError",
    "TransientError",
    "accepted_values",
    "daily",
    "database_source",
    "decision",
    "drift_monitor",
    "feature_view",
    "features",
    "freshness",
    "in_range",
    "intake_source",
    "kfold",
    "lightgbm",
    "matches",
    "model",
    "monitor_alert",
    "monthly",
    "new_data",
    "new_files",
    "new_version",
    "not_null",
    "open_project",
    "performance_monitor",
    "quality_monitor",
    "retrain",
    "retry",
    "row_count",
    "schedule",
    "sensor",
    "service",
    "sklearn",
    "source",
    "static",
    "stream_features",
    "stream_source",
    "table",
    "time_split",
    "training_set",
    "unique",
    "window",
    "xgboost",
]
