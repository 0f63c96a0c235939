"""Users (accounts), the credit ledger, redemption codes; key restrictions.

Existing keys each get a user of their own (no credit), so no key is orphaned.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False, server_default="user"),
        sa.Column("plan", sa.String(32), nullable=False, server_default="free"),
        sa.Column("balance_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("job_id", sa.String(32)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_ledger_user_id", "ledger", ["user_id"])
    op.create_index("ix_ledger_job_id", "ledger", ["job_id"])
    op.create_table(
        "redemption_codes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("display", sa.String(40), nullable=False),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("value_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("redeemed_by", sa.String(32), sa.ForeignKey("users.id")),
        sa.Column("redeemed_at", sa.DateTime),
    )
    op.create_index("ix_redemption_codes_code_hash", "redemption_codes", ["code_hash"], unique=True)
    op.create_index("ix_redemption_codes_batch", "redemption_codes", ["batch"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.String(32)))
        batch.add_column(sa.Column("expires_at", sa.DateTime))
        batch.add_column(sa.Column("allowed_models", sa.JSON))
        batch.add_column(sa.Column("allowed_ips", sa.JSON))
        batch.add_column(sa.Column("secret_enc", sa.Text))
        batch.create_index("ix_api_keys_user_id", ["user_id"])
        batch.create_foreign_key("fk_api_keys_user_id", "users", ["user_id"], ["id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("user_id", sa.String(32)))
        # jobs admitted before this revision reserved cap images
        batch.add_column(
            sa.Column("cap_reserved", sa.Boolean, nullable=False, server_default=sa.true())
        )
        batch.create_index("ix_jobs_user_id", ["user_id"])

    conn = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    for (key_id,) in conn.execute(sa.text("SELECT id FROM api_keys")).all():
        user_id = uuid.uuid4().hex[:16]
        conn.execute(
            sa.text(
                "INSERT INTO users (id, name, role, plan, balance_minor, enabled, created_at) "
                "VALUES (:id, :name, 'user', 'free', 0, :enabled, :now)"
            ),
            {"id": user_id, "name": f"key-{key_id}", "enabled": True, "now": now},
        )
        conn.execute(
            sa.text("UPDATE api_keys SET user_id = :u WHERE id = :k"), {"u": user_id, "k": key_id}
        )
        conn.execute(
            sa.text("UPDATE jobs SET user_id = :u WHERE key_id = :k"), {"u": user_id, "k": key_id}
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_user_id")
        batch.drop_column("cap_reserved")
        batch.drop_column("user_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("fk_api_keys_user_id", type_="foreignkey")
        batch.drop_index("ix_api_keys_user_id")
        for column in ("secret_enc", "allowed_ips", "allowed_models", "expires_at", "user_id"):
            batch.drop_column(column)
    op.drop_table("redemption_codes")
    op.drop_table("ledger")
    op.drop_table("users")
