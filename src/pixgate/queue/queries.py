"""Read-only questions about the database that routers used to ask with their own SQL."""

from __future__ import annotations

from sqlalchemy import text

from pixgate.db import Database


async def database_state(db: Database) -> str:
    """'ok' when the database answers a query, else 'error: <exception type>' (readiness
    reports it; the exception's text may hold connection details, so it is not shown)."""
    try:
        async with db.read() as s:
            await s.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
