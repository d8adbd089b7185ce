"""The catalog's current schema as SQLAlchemy Core tables.

Changes to these tables ship with an Alembic migration in ``migrations/versions`` and a
new ``HEAD_REVISION``; existing catalogs are upgraded when a project is opened.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

HEAD_REVISION = "0012"

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("selection", Text, nullable=False),
    Column("full_refresh", Boolean, nullable=False),
    Column("summary", JSON),
    Column("kind", String(16), nullable=False, server_default="build"),
    Column("requested_by", String(255), nullable=False, server_default=""),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("params", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("owner", String(255)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("lease_until", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("not_before", DateTime(timezone=True)),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("retry_of", String(36)),
    Column("timeout_s", Float),
    Index("ix_runs_status_priority", "status", "priority", "created_at"),
    Index("ix_runs_created_at", "created_at"),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.run_id"), nullable=False, index=True),
    Column("table_name", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("version", Integer),
    Column("error", Text),
    Column("engine", String(16)),
    Column("engine_reason", Text),
)

materializations = Table(
    "materializations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("rows_added", BigInteger, nullable=False),
    Column("quarantined", BigInteger, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("recovered", Boolean, nullable=False),
    Column("stats", JSON),
    UniqueConstraint("table_name", "version", name="uq_materialization_version"),
)

ingested_files = Table(
    "ingested_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(255), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("quarantined", BigInteger, nullable=False),
)

quarantine_counts = Table(
    "quarantine_counts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(255), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("check_name", Text, nullable=False),
    Column("rows", BigInteger, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("task", String(32), nullable=False),
    Column("estimator", String(32), nullable=False),
    Column("training_set", String(255), nullable=False),
    Column("training_set_version", Integer, nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("artifact_digest", String(64), nullable=False),
    Column("manifest_digest", String(64), nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    UniqueConstraint("model", "version", name="uq_model_version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(255), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("alias", String(64)),
    Column("version", Integer, nullable=False),
    Column("previous_version", Integer),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("gates", JSON),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("evaluation_id", String(32), nullable=False, index=True),
    Column("monitor", String(255), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
    Column("window_start", DateTime(timezone=True)),
    Column("window_end", DateTime(timezone=True)),
    Column("subject", String(255), nullable=False),
    Column("statistic", String(64), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("state", String(16), nullable=False),
    Column("model_version", Integer),
    Column("details", JSON),
)

monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("evaluation_id", String(32), nullable=False, index=True),
    Column("monitor", String(255), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("message", Text, nullable=False),
    Column("action", String(32), nullable=False),
    Column("details", JSON),
)

schedule_state = Table(
    "schedule_state",
    metadata,
    Column("schedule", String(255), primary_key=True),
    Column("cursor", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule", String(255), nullable=False),
    Column("tick_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("run", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(36)),
    UniqueConstraint("schedule", "tick_at", name="uq_schedule_tick"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
)

sensor_state = Table(
    "sensor_state",
    metadata,
    Column("sensor", String(255), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
    Column("fired", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(36)),
    Column("fired_at", DateTime(timezone=True)),
)

partitions = Table(
    "partitions",
    metadata,
    Column("table_name", String(255), primary_key=True),
    Column("partition_key", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("inputs", JSON),
    Column("version", BigInteger),
    Column("run_id", String(36), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("error", Text),
)

notices = Table(
    "notices",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON),
    Index("ix_notices_subject", "kind", "subject", "at"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("column_name", String(255), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("details", JSON, nullable=False),
)

saved_queries = Table(
    "saved_queries",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("sql", Text, nullable=False),
    Column("owner", String(255), nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    Column("pins", JSON, nullable=False),
)
