"""Read-only questions about the database that routers used to ask with their own SQL."""

from __future__ import annotations

from sqlalchemy import func, select, text

from pixgate.db import Database, Job


async def database_state(db: Database) -> str:
    """'ok' when the database answers a query, else 'error: <exception type>' (readiness
    reports it; the exception's text may hold connection details, so it is not shown)."""
    try:
        async with db.read() as s:
            await s.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def recent_jobs(
    db: Database,
    user_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    cancelled: bool | None = None,
) -> list[Job]:
    """Jobs newest first, optionally one account's and of one status; `cancelled`
    True/False keeps only/no jobs cancelled by their owner."""
    stmt = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    if status:
        stmt = stmt.where(Job.status == status)
    if cancelled is not None:
        code = func.coalesce(Job.error_code, "")
        stmt = stmt.where(code == "cancelled" if cancelled else code != "cancelled")
    async with db.read() as s:
        return list((await s.scalars(stmt)).all())
