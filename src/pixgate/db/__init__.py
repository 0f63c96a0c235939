from pixgate.db.database import Database
from pixgate.db.tables import (
    ApiKey,
    Base,
    Job,
    LedgerEntry,
    RedemptionCode,
    User,
    WebhookAttempt,
    utcnow,
)

__all__ = [
    "ApiKey",
    "Base",
    "Database",
    "Job",
    "LedgerEntry",
    "RedemptionCode",
    "User",
    "WebhookAttempt",
    "utcnow",
]
