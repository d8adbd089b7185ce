"""Monitor results as time series, and the alerts they raised.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("evaluation_id", sa.String(32), nullable=False, index=True),
        sa.Column("monitor", sa.String(255), nullable=False, index=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.Column("window_start", TS),
        sa.Column("window_end", TS),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("statistic", sa.String(64), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("details", sa.JSON),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("evaluation_id", sa.String(32), nullable=False, index=True),
        sa.Column("monitor", sa.String(255), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("details", sa.JSON),
    )
