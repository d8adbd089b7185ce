"""Schedules' cursors and decided ticks, the scheduler's leader lease, and retry timing.

A tick is decided once: (schedule, tick_at) is unique, and the run a tick queues is
inserted in the same transaction. A run may wait until ``not_before`` (a retry's backoff)
and knows its attempt and the run it retries.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedule_state",
        sa.Column("schedule", sa.String(255), primary_key=True),
        sa.Column("cursor", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "schedule_ticks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("schedule", sa.String(255), nullable=False),
        sa.Column("tick_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("run", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.UniqueConstraint("schedule", "tick_at", name="uq_schedule_tick"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=False),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("not_before", TS))
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("retry_of", sa.String(36)))
        batch.add_column(sa.Column("timeout_s", sa.Float))
