"""Asynchronous tasks and their webhooks: how the client asked to see the result, the
webhook's delivery state on the job, and one row per delivery attempt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("task_options", sa.JSON))
        batch.add_column(sa.Column("webhook_url", sa.Text))
        batch.add_column(sa.Column("webhook_secret_enc", sa.Text))
        batch.add_column(sa.Column("webhook_status", sa.String(16)))
        batch.add_column(
            sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("webhook_next_at", sa.DateTime))
        batch.add_column(sa.Column("webhook_last_error", sa.Text))
    op.create_index("ix_jobs_webhook_due", "jobs", ["webhook_status", "webhook_next_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_webhook_attempts_job_id", "webhook_attempts", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_job_id", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_jobs_webhook_due", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "webhook_last_error",
            "webhook_next_at",
            "webhook_attempts",
            "webhook_status",
            "webhook_secret_enc",
            "webhook_url",
            "task_options",
        ):
            batch.drop_column(column)
