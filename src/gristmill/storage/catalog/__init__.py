"""The catalog of runs and materializations."""

from gristmill.storage.catalog.records import (
    ApiToken,
    IngestedFile,
    Materialization,
    ModelEvent,
    ModelVersion,
    MonitorAlert,
    MonitorResult,
    PartitionRecord,
    RunRecord,
    StepRecord,
)
from gristmill.storage.catalog.store import Catalog, CatalogReader, resolve_url

__all__ = [
    "ApiToken",
    "Catalog",
    "CatalogReader",
    "IngestedFile",
    "Materialization",
    "ModelEvent",
    "ModelVersion",
    "MonitorAlert",
    "MonitorResult",
    "PartitionRecord",
    "RunRecord",
    "StepRecord",
    "resolve_url",
]
