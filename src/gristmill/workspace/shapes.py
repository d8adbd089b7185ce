"""Public shapes returned by the service layer to the CLI, the API and the UI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "value") and type(value).__module__ != "builtins":
        return value.value
    return value


class Shape:
    """What every public shape shares: it renders as an HTML table in Jupyter."""

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(_short(v))}</td></tr>"
            for k, v in to_jsonable(self).items()
        )
        return f"<table><caption>{escape(type(self).__name__)}</caption>{rows}</table>"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:300] + "…"


@dataclass(frozen=True)
class TableStatus(Shape):
    name: str
    kind: str
    version: int | None
    rows: int | None
    built_at: datetime | None
    state: str
    """``fresh``, ``stale`` or ``never built``."""
    reason: str
    quarantined: int
    feature_view: dict[str, Any] | None = None


@dataclass(frozen=True)
class TableInfo(Shape):
    name: str
    kind: str
    defined_at: str
    inputs: list[str]
    version: int | None
    rows: int | None
    columns: list[dict[str, str]]
    description: str
    feature_view: dict[str, Any] | None = None


@dataclass(frozen=True)
class SourceInfo(Shape):
    """A source as ``gristmill sources`` shows it: what it reads (never a secret), how
    far it got and what went wrong last."""

    name: str
    kind: str
    """``files``, ``database`` or ``stream``."""
    reads: str
    version: int | None
    rows: int | None
    extracted_at: datetime | None
    state: dict[str, Any]
    """Files: how many were ingested; database: watermark, extraction number, rows in the
    lag window; stream: the last sequence landed, the messages of the last extraction."""
    behind_s: float | None
    """Seconds from the newest landed change (a database's time cursor, a stream's last
    message) to now."""
    last_error: str | None


@dataclass(frozen=True)
class VersionInfo(Shape):
    table: str
    version: int
    run_id: str
    mode: str
    fingerprint: str
    rows: int
    rows_added: int
    quarantined: int
    quarantine_counts: dict[str, int]
    inputs: dict[str, int]
    files: list[str]
    built_at: datetime
    duration_s: float
    recovered: bool
    stats: dict[str, Any] = field(default_factory=dict)
    """What the step recorded about the version: for a training set its label rows and,
    per feature view, the rows without features (``missing``); for a model its test
    metrics; for predictions the model, mean score and positives."""


@dataclass(frozen=True)
class RunInfo(Shape):
    run_id: str
    status: str
    """queued, running, success, noop, failed, crashed, cancelled or timed_out."""
    started_at: datetime | None
    """None while queued."""
    finished_at: datetime | None
    selection: str
    full_refresh: bool
    summary: dict[str, Any] | None
    kind: str = "build"
    requested_by: str = ""
    priority: int = 0
    created_at: datetime | None = None
    owner: str | None = None
    """``host:pid:start`` of the process running it."""
    cancel_requested: bool = False
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """What it builds (``select``, ``force``) and what asked for it (``schedule``, ``tick``)."""
    attempt: int = 1
    retry_of: str | None = None
    not_before: datetime | None = None
    timeout_s: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LineageNode(Shape):
    name: str
    kind: str
    version: int | None
    inputs: list[LineageNode]
    """For --upstream: what this version read (exact versions when built)."""
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelSummary(Shape):
    name: str
    training_set: str
    estimator: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    headline: dict[str, float | None]
    """The latest version's metric values."""
    defined: bool = True
    """False when the registry has versions of a model the project no longer defines."""


@dataclass(frozen=True)
class ModelVersionInfo(Shape):
    model: str
    version: int
    aliases: list[str]
    created_at: datetime
    run_id: str
    task: str
    estimator: str
    metrics: dict[str, dict[str, float | None]]
    baseline: dict[str, Any]
    params: dict[str, Any]
    features: list[dict[str, Any]]
    importance: dict[str, float]
    split: dict[str, Any]
    curves: dict[str, Any]
    lineage: dict[str, Any]
    """training set version -> the exact input versions it read, and the code hash."""
    artifact: dict[str, Any]
    environment: dict[str, str]
    duration_s: float
    intended_use: str
    limitations: str


@dataclass(frozen=True)
class Comparison(Shape):
    model: str
    a: int
    b: int
    metrics: list[dict[str, Any]]
    """metric, a, b, delta, and whether b's interval overlaps a's."""
    params: list[dict[str, Any]]
    """Only the parameters that differ."""
    features_added: list[str]
    features_removed: list[str]
    training_sets: dict[str, int]
    importance: list[dict[str, Any]] = field(default_factory=list)
    """Each feature's importance in a and in b (None where a version lacks it)."""


@dataclass(frozen=True)
class Promotion(Shape):
    model: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    """``promote``, ``override`` (gates failed, --force) or ``rollback``."""
    gates: list[dict[str, Any]]
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class ScoreResult(Shape):
    model: str
    model_version: int
    table: str
    table_version: int
    as_of: datetime | None
    predictions_table: str
    predictions_version: int
    rows: int
    duration_s: float
    score_mean: float | None
    predicted_positive: int | None
    engine: str = "duckdb"
    engine_reason: str = ""


@dataclass(frozen=True)
class KeyInfo(Shape):
    """An API key as ``gristmill tokens list`` and the API show it: never its hash."""

    id: str
    role: str
    note: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class QueryResult(Shape):
    """What a query of the SQL page returned."""

    columns: list[dict[str, str]]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    """More rows matched than ``limit``; only the first ``limit`` are here."""
    limit: int
    duration_ms: float
    versions: dict[str, int]
    """The exact version of each table the query read."""
    masked: dict[str, list[str]]
    """Per table, the personal-data columns masked for the principal's role."""


@dataclass(frozen=True)
class SavedQueryInfo(Shape):
    name: str
    sql: str
    owner: str
    saved_at: datetime
    pins: dict[str, Any]


@dataclass(frozen=True)
class GraphNode(Shape):
    id: str
    label: str
    kind: str
    """source, table, feature_view, training_set, model, service or monitor."""
    status: str
    """fresh, stale, never, failed or unknown."""
    version: int | None
    href: str


@dataclass(frozen=True)
class ProjectGraph(Shape):
    """The whole project as one graph (the UI's lineage page), pruned to ``hops`` around
    ``focus`` when one is given."""

    nodes: list[GraphNode]
    edges: list[list[str]]
    focus: str | None
    total: int
    """Nodes in the whole project, before pruning."""


@dataclass(frozen=True)
class AuditEvent(Shape):
    """One entry of the audit trail: a model alias moved, a promotion refused or left
    pending, a retrain, a person's data erased."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: str
    reason: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelEventInfo(Shape):
    """An entry of a model's audit trail: an alias moved (promote, override, rollback), or
    a retrain, a refusal, a promotion left pending."""

    model: str
    action: str
    alias: str | None
    version: int
    previous_version: int | None
    actor: str
    """The principal who acted: ``user:…``, ``key:…`` or ``monitor:…``."""
    reason: str
    at: datetime
    gates: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class MonitorValue(Shape):
    """One stored value of a monitor: a statistic of a subject at an evaluation."""

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
    model_version: int | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class AlertInfo(Shape):
    evaluation_id: str
    monitor: str
    at: datetime
    message: str
    action: str
    """What followed: recorded, promoted, pending, kept (gates refused), failed."""
    details: dict[str, Any] | None = None


def shape_of(cls: type[Any], record: Any) -> Any:
    """A public shape from an internal record with the same fields."""
    return cls(**{f: getattr(record, f) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ServiceInfo(Shape):
    name: str
    model: str
    alias: str
    version: int | None
    """The version ``alias`` points at now (None: not promoted yet)."""
    challenger: str | None
    challenger_version: int | None
    lookups: list[str]
    request_features: list[str]
