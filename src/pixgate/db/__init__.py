from pixgate.db.database import Database
from pixgate.db.tables import (
    ApiKey,
    Base,
    ChannelAttempt,
    ChannelState,
    ConsoleSession,
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
    "ConsoleSession",
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
