"""Partitions: each partition's latest state (status, what it was built from).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "partitions",
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("partition_key", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON),
        sa.Column("version", sa.BigInteger),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("error", sa.Text),
    )
