"""Value objects the catalog stores and returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class IngestedFile:
    path: str
    size: int
    mtime_ns: int
    rows: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class Materialization:
    """One committed version of a table and everything that made it."""

    table_name: str
    version: int
    run_id: str
    kind: str
    mode: str
    fingerprint: str
    code_hash: str
    inputs: dict[str, int]
    rows: int
    rows_added: int
    quarantined: int
    schema: list[dict[str, str]]
    started_at: datetime
    finished_at: datetime
    recovered: bool = False
    files: tuple[IngestedFile, ...] = ()
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    """What a step kind reports about its output (training sets: label rows without
    features, per view; models: the model version's metrics)."""

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_record(self) -> dict[str, Any]:
        """JSON form, stored in the Delta commit so the catalog can be rebuilt from it."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        data.pop("recovered")
        return data

    @classmethod
    def from_record(cls, record: dict[str, Any], version: int) -> Materialization:
        data = dict(record)
        data["version"] = version
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["finished_at"] = datetime.fromisoformat(data["finished_at"])
        data["files"] = tuple(IngestedFile(**f) for f in data.get("files", ()))
        data["recovered"] = True
        return cls(**data)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    started_at: datetime | None
    """None while queued."""
    finished_at: datetime | None
    status: str
    selection: str
    full_refresh: bool
    summary: dict[str, Any] | None
    kind: str = "build"
    requested_by: str = ""
    priority: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    owner: str | None = None
    """``host:pid:start`` of the process that runs it (the start time tells a reused pid)."""
    heartbeat_at: datetime | None = None
    lease_until: datetime | None = None
    cancel_requested_at: datetime | None = None
    error: str | None = None
    timeout_s: float | None = None
    not_before: datetime | None = None
    attempt: int = 1
    retry_of: str | None = None


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    table_name: str
    kind: str
    status: str
    reason: str
    started_at: datetime | None
    finished_at: datetime | None
    version: int | None
    error: str | None
    engine: str | None = None
    """Where it ran (``duckdb``, ``spark``); None before it started."""
    engine_reason: str | None = None
    """Why there: ``inputs 1.2 MB < auto_threshold 20.0 GB``, ``pinned with engine='spark'``."""


@dataclass(frozen=True)
class ModelVersion:
    """One trained, evaluated and registered version of a model."""

    model: str
    version: int
    run_id: str
    created_at: datetime
    task: str
    estimator: str
    training_set: str
    training_set_version: int
    code_hash: str
    fingerprint: str
    artifact_digest: str
    """SHA-256 of the native model file (LightGBM/XGBoost text, skops)."""
    manifest_digest: str
    """SHA-256 of the manifest: features, encodings, label, threshold, file format."""
    duration_s: float
    metrics: dict[str, dict[str, Any]]
    """metric -> {"value", "low", "high"} (bootstrap 95% interval)."""
    details: dict[str, Any]
    """params, features, split, rows, baseline, importance, curves, environment, card."""


@dataclass(frozen=True)
class ModelEvent:
    """An entry of the audit trail: who moved which alias to which version, and why."""

    model: str
    action: str
    alias: str | None
    version: int
    previous_version: int | None
    actor: str
    reason: str
    at: datetime
    gates: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ErasureRecord:
    """An entry of the erasure trail: whose rows (a digest of the subject), by whom, when,
    and per table the versions before and after, the rows and the files removed."""

    run_id: str
    column_name: str
    subject: str
    actor: str
    at: datetime
    details: dict[str, Any]
    id: int | None = None


@dataclass(frozen=True)
class ApiToken:
    """An API key's record; the key itself is never stored, only its SHA-256."""

    id: str
    role: str
    hash: str
    note: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class MonitorResult:
    """One statistic of one subject (a feature, the score, a metric) in one evaluation."""

    evaluation_id: str
    monitor: str
    type: str
    evaluated_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    subject: str
    statistic: str
    value: float | None
    threshold: float | None
    state: str
    """ok, alert, or skipped (too few rows, nothing to compare with)."""
    model_version: int | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class MonitorAlert:
    evaluation_id: str
    monitor: str
    at: datetime
    message: str
    action: str
    """What followed: recorded, promoted, pending, kept (gates refused), failed."""
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class PartitionRecord:
    """A partition's latest state: built (``success``) from these inputs, or ``failed``."""

    table_name: str
    partition_key: str
    status: str
    code_hash: str
    inputs: dict[str, int]
    version: int | None
    """The table version whose commit wrote it (None when it failed)."""
    run_id: str
    updated_at: datetime
    error: str | None = None


@dataclass(frozen=True)
class SavedQuery:
    """A query of the SQL page kept under a name, with the versions (or time) it pins."""

    name: str
    sql: str
    owner: str
    saved_at: datetime
    pins: dict[str, Any]
    """``{"versions": {table: version}}`` or ``{"as_of": iso}``, or ``{}`` (latest)."""
