from pixgate.db.database import Database
from pixgate.db.tables import ApiKey, Base, Job, utcnow

__all__ = ["ApiKey", "Base", "Database", "Job", "utcnow"]
