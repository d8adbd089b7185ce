"""Saved queries of the SQL page: a name, the SQL, who saved it, the versions it pins.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_queries",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("sql", sa.Text, nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pins", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("saved_queries")
