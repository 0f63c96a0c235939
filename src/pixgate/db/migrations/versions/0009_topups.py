"""Top-ups: the ledger's idempotency key, so a retried payment notification credits once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-19
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200)))
        # unique, and NULLs (every other entry) never collide, on SQLite and PostgreSQL alike
        batch.create_index("ix_ledger_idempotency_key", ["idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_index("ix_ledger_idempotency_key")
        batch.drop_column("idempotency_key")
