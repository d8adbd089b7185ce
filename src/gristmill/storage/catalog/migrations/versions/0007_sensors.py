"""Sensors' cursors and their last evaluation.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sensor_state",
        sa.Column("sensor", sa.String(255), primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.Column("fired", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("fired_at", TS),
    )
