"""Labels and moderation: a key's explicit-label override and the moderation log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("explicit_label", sa.Boolean))
    op.create_table(
        "moderation_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("user_id", sa.String(32)),
        sa.Column("dialect", sa.String(32), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("term", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("job_id", sa.String(32)),
    )
    op.create_index("ix_moderation_events_created", "moderation_events", ["created_at"])
    op.create_index("ix_moderation_events_key", "moderation_events", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_moderation_events_key", "moderation_events")
    op.drop_index("ix_moderation_events_created", "moderation_events")
    op.drop_table("moderation_events")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("explicit_label")
