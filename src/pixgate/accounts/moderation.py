"""The moderation log: every refusal (a blocked term in a prompt, an output image the
classifier refused), with the key, the dialect, what matched and when. Refusals cost
nothing; the log is what the admin reviews (`GET /admin/moderation`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from pixgate.db import Database, ModerationEvent, utcnow

MAX_TERM = 200  # a configured term is short; longer ones are cut in the log


@dataclass(frozen=True)
class Refusal:
    """One refusal, as recorded. `term`: the blocked term that matched (None for an image);
    `score`: the image classifier's score (None for text)."""

    key_id: str | None
    user_id: str | None
    dialect: str
    field: str
    term: str | None = None
    score: float | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class RefusalView:
    id: int
    created_at: datetime
    key_id: str | None
    user_id: str | None
    dialect: str
    field: str
    term: str | None
    score: float | None
    job_id: str | None


async def record(db: Database, refusal: Refusal) -> None:
    """Write one refusal (its own short transaction: the request itself wrote nothing)."""
    term = refusal.term[:MAX_TERM] if refusal.term else refusal.term
    async with db.write() as s:
        await s.execute(
            insert(ModerationEvent).values(
                created_at=utcnow(),
                key_id=refusal.key_id,
                user_id=refusal.user_id,
                dialect=refusal.dialect[:32],
                field=refusal.field[:64],
                term=term,
                score=refusal.score,
                job_id=refusal.job_id,
            )
        )


async def recent(
    db: Database,
    limit: int = 100,
    key_id: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
) -> list[RefusalView]:
    """The newest refusals first, optionally for one key, since a time, or older than an
    id (paging)."""
    query = select(ModerationEvent).order_by(ModerationEvent.id.desc()).limit(limit)
    if key_id is not None:
        query = query.where(ModerationEvent.key_id == key_id)
    if since is not None:
        query = query.where(ModerationEvent.created_at >= since)
    if before_id is not None:
        query = query.where(ModerationEvent.id < before_id)
    async with db.read() as s:
        rows = (await s.scalars(query)).all()
    return [
        RefusalView(
            r.id, r.created_at, r.key_id, r.user_id, r.dialect, r.field, r.term, r.score, r.job_id
        )
        for r in rows
    ]
