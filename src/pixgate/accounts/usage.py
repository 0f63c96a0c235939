"""Usage queries for an account: images and money per key, per model, per day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import func, select

from pixgate.db import ApiKey, Database, Job, LedgerEntry, User
from pixgate.money import from_minor

GroupBy = Literal["key", "model", "day"]


async def usage(
    db: Database, user_id: str, group_by: GroupBy, start: date, end: date
) -> list[dict]:
    """Rows of {group, requests, images, cost} for jobs created in [start, end] (UTC days)."""
    column = {
        "key": Job.key_id,
        "model": Job.model,
        "day": func.date(Job.created_at),
    }[group_by]
    stmt = (
        select(
            column.label("group"),
            func.count().label("requests"),
            func.coalesce(func.sum(Job.n_succeeded), 0).label("images"),
            func.coalesce(func.sum(Job.cost_minor), 0).label("cost"),
        )
        .where(
            Job.user_id == user_id,
            Job.created_at >= datetime.combine(start, time.min),
            Job.created_at < datetime.combine(end + timedelta(days=1), time.min),
        )
        .group_by(column)
        .order_by(column)
    )
    async with db.read() as s:
        rows = (await s.execute(stmt)).all()
        displays = {}
        if group_by == "key":
            displays = dict(
                (
                    await s.execute(
                        select(ApiKey.id, ApiKey.display).where(ApiKey.user_id == user_id)
                    )
                ).all()
            )
    return [
        {
            "group": str(r.group) if group_by != "key" else displays.get(r.group, r.group),
            "requests": int(r.requests),
            "images": int(r.images),
            "cost": str(from_minor(int(r.cost))),
        }
        for r in rows
    ]


async def ledger_totals(db: Database, user_id: str) -> dict[str, int]:
    """The account's ledger summed per kind (grant, charge, ...), in minor units."""
    stmt = (
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount_minor))
        .where(LedgerEntry.user_id == user_id)
        .group_by(LedgerEntry.kind)
    )
    async with db.read() as s:
        return {kind: int(total or 0) for kind, total in (await s.execute(stmt)).all()}


def remaining_images(key: ApiKey, user: User, price_minor: int) -> int | None:
    """Images this key can still make at `price_minor`: the smaller of what its cap and
    the account's balance allow; None when neither limits it."""
    limits = []
    if key.image_cap is not None:
        limits.append(max(0, key.image_cap - key.images_used - key.images_reserved))
    if price_minor > 0:
        limits.append(max(0, user.balance_minor // price_minor))
    return min(limits) if limits else None
