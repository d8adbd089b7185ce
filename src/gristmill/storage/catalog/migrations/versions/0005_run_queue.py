"""Runs coordinate in the catalog: a kind, a requester, a priority, an owner with a lease.

A run is requested (``created_at``), may wait as ``queued``, and is claimed by one owner
(host, pid and the process's start time) who heartbeats its lease while it runs. Runs of
earlier releases were started at once: their request time is their start time.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="build"))
        batch.add_column(
            sa.Column("requested_by", sa.String(255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("params", sa.JSON))
        batch.add_column(sa.Column("created_at", TS))
        batch.add_column(sa.Column("owner", sa.String(255)))
        batch.add_column(sa.Column("heartbeat_at", TS))
        batch.add_column(sa.Column("lease_until", TS))
        batch.add_column(sa.Column("cancel_requested_at", TS))
        batch.add_column(sa.Column("error", sa.Text))
        batch.alter_column("started_at", existing_type=TS, nullable=True)
    op.execute("UPDATE runs SET created_at = started_at")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("created_at", existing_type=TS, nullable=False)
        batch.create_index("ix_runs_status_priority", ["status", "priority", "created_at"])
        batch.create_index("ix_runs_created_at", ["created_at"])
