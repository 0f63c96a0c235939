"""Tables. The job table is both the work queue and the record of every request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC: stored and compared the same way on SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    """An account: owns keys and a balance. `balance_minor` always equals the sum of the
    user's ledger entries (checked by `pixgate audit`)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="user")  # user | admin
    plan: Mapped[str] = mapped_column(String(32), default="free")
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The web console's login (pixgate.accounts.passwords); API-only users have neither.
    email: Mapped[str | None] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))


class ConsoleSession(Base):
    """A web console login (pixgate.accounts.sessions): only the SHA-256 of the cookie's
    random token is stored; `expires_at` slides forward while the session is used."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class LedgerEntry(Base):
    """Append-only. Kinds: grant, topup, redemption, reserve, refund, charge, adjust."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A top-up's Idempotency-Key: unique, so a retried payment notification credits once.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, index=True)


class RedemptionCode(Base):
    __tablename__ = "redemption_codes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display: Mapped[str] = mapped_column(String(40))
    batch: Mapped[str] = mapped_column(String(32), index=True)
    value_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    redeemed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display: Mapped[str] = mapped_column(String(80))
    image_cap: Mapped[int | None] = mapped_column(Integer)
    images_used: Mapped[int] = mapped_column(Integer, default=0)
    images_reserved: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON)  # addresses or CIDRs
    secret_enc: Mapped[str | None] = mapped_column(Text)  # Fernet, server master key
    explicit_label: Mapped[bool | None] = mapped_column(Boolean)  # None: the deployment's


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_webhook_due", "webhook_status", "webhook_next_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    # queued -> running -> succeeded | failed ; running -> queued when a lease lapses
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    n: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whether admission reserved images of the key's cap (keys without a cap skip it).
    cap_reserved: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    n_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    inference_seconds: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0-1, denoising steps done
    images: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Asynchronous tasks: how the client asked to see the result (response_format, the
    # base URL of links), and the webhook told when the job finishes. webhook_status is
    # None (no webhook) | pending | delivered | failed; pending deliveries of finished jobs
    # whose webhook_next_at is due (or None) are claimed by API nodes (pixgate.queue.webhooks).
    task_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text)  # Fernet, server master key
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(DateTime)
    webhook_last_error: Mapped[str | None] = mapped_column(Text)
    # Relayed jobs: the channel whose images were kept, and what the upstream charged the
    # operator for them (its upstream_price per image); the calls are in channel_attempts.
    channel: Mapped[str | None] = mapped_column(String(64))
    upstream_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def task_status(self) -> str:
        """What task APIs report: queued | running | succeeded | failed | cancelled (a
        cancelled job is stored as failed with error code `cancelled`)."""
        if self.status == "failed" and self.error_code == "cancelled":
            return "cancelled"
        return self.status


class WebhookAttempt(Base):
    """One delivery attempt of a task's webhook (append-only)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no HTTP response
    error: Mapped[str | None] = mapped_column(Text)  # None: delivered
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ChannelAttempt(Base):
    """One upstream call of a relayed job (append-only), written in the transaction that
    finishes the job: outcome `ok` or the failure kind, what it cost, how long it took."""

    __tablename__ = "channel_attempts"
    __table_args__ = (Index("ix_channel_attempts_channel_created", "channel", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | connect | timeout | busy | ...
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ChannelState(Base):
    """A channel's circuit breaker as its relay workers last saw it, and whether it was
    disabled (an upstream answering 401/403); read by the admin view. Each worker keeps
    its own breaker and writes here when the state changes."""

    __tablename__ = "channel_states"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")  # closed | open | half_open
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModerationEvent(Base):
    """One refusal by moderation: a prompt (or other text) that matched a blocked term, or
    an output image the classifier refused. Nothing was charged for it."""

    __tablename__ = "moderation_events"
    __table_args__ = (
        Index("ix_moderation_events_created", "created_at"),
        Index("ix_moderation_events_key", "key_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    dialect: Mapped[str] = mapped_column(String(32))
    field: Mapped[str] = mapped_column(String(64))  # prompt, negative_prompt, watermark, output
    term: Mapped[str | None] = mapped_column(Text)  # the blocked term that matched
    score: Mapped[float | None] = mapped_column(Float)  # the classifier's score
    job_id: Mapped[str | None] = mapped_column(String(32))


class WorkerRow(Base):
    """A running worker, as its heartbeat last told (pixgate.queue.registry): what it
    serves and runs now. Deleted when it stops cleanly; a row whose `last_seen` is older
    than three heartbeats is a worker that died (shown as not live, pruned after a day)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the jobs' worker_id
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64))  # cuda, mps, cpu; relay: no engine
    models: Mapped[list[str]] = mapped_column(JSON)
    current_job_id: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
