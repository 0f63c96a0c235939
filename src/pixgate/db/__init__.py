from pixgate.db.database import Database
from pixgate.db.tables import (
    ApiKey,
    Base,
    ChannelAttempt,
    ChannelState,
    Job,
    LedgerEntry,
    ModerationEvent,
    RedemptionCode,
    User,
    WebhookAttempt,
    WorkerRow,
    utcnow,
)

__all__ = [
    "ApiKey",
    "Base",
    "ChannelAttempt",
    "ChannelState",
    "Database",
    "Job",
    "LedgerEntry",
    "ModerationEvent",
    "RedemptionCode",
    "User",
    "WebhookAttempt",
    "WorkerRow",
    "utcnow",
]
