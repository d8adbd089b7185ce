"""Where each step of a run ran (duckdb, spark) and why: ``gristmill runs ID`` shows it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.add_column(sa.Column("engine", sa.String(16)))
        batch.add_column(sa.Column("engine_reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.drop_column("engine_reason")
        batch.drop_column("engine")
