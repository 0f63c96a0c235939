"""Upstream relay channels: the channel and upstream cost of a relayed job, one row per
upstream call, and each channel's breaker state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("channel", sa.String(64)))
        batch.add_column(
            sa.Column("upstream_cost_minor", sa.BigInteger, nullable=False, server_default="0")
        )
    op.create_table(
        "channel_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("images", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_channel_attempts_job_id", "channel_attempts", ["job_id"])
    op.create_index(
        "ix_channel_attempts_channel_created", "channel_attempts", ["channel", "created_at"]
    )
    op.create_table(
        "channel_states",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="closed"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_states")
    op.drop_index("ix_channel_attempts_channel_created", table_name="channel_attempts")
    op.drop_index("ix_channel_attempts_job_id", table_name="channel_attempts")
    op.drop_table("channel_attempts")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("upstream_cost_minor")
        batch.drop_column("channel")
