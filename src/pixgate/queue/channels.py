"""Channel records in the database: each channel's last known state (written by relay
workers, read by the admin view and by the other workers) and its call statistics over a
window (from `channel_attempts` and the jobs it served)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from pixgate.db import ChannelAttempt, ChannelState, Database, Job, utcnow

STATE_VALUES = {"closed": 0, "half_open": 1, "busy": 1, "open": 2, "disabled": 3}
"""The breaker-state gauge's values (pixgate_channel_state)."""


async def save_state(
    db: Database, name: str, state: str, disabled: bool, reason: str | None
) -> None:
    async with db.write() as s:
        row = await s.get(ChannelState, name)
        if row is None:
            s.add(ChannelState(name=name, state=state, disabled=disabled, reason=reason))
        else:
            row.state, row.disabled, row.reason, row.updated_at = state, disabled, reason, utcnow()


async def load_states(db: Database) -> dict[str, ChannelState]:
    async with db.read() as s:
        return {row.name: row for row in (await s.scalars(select(ChannelState))).all()}


async def set_enabled(db: Database, name: str, enabled: bool, reason: str | None = None) -> None:
    """An admin's enable (clears a 401/403 disabling) or disable of a channel; workers
    pick it up within a few seconds."""
    async with db.write() as s:
        row = await s.get(ChannelState, name)
        if row is None:
            state = "closed" if enabled else "disabled"
            s.add(ChannelState(name=name, state=state, disabled=not enabled, reason=reason))
            return
        await s.execute(
            update(ChannelState)
            .where(ChannelState.name == name)
            .values(
                disabled=not enabled,
                reason=None if enabled else reason,
                state="closed" if enabled else "disabled",
                updated_at=utcnow(),
            )
        )


@dataclass(frozen=True)
class WindowStats:
    """One channel's calls and money over a window."""

    calls: int
    ok: int
    latency_ms: dict[str, int | None]  # p50, p95, p99 over every call
    images: int  # images delivered to clients from this channel
    upstream_cost_minor: int
    revenue_minor: int  # what clients were charged for them

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.calls if self.calls else None

    @property
    def margin_minor(self) -> int:
        return self.revenue_minor - self.upstream_cost_minor


def percentile(sorted_values: list[int], q: float) -> int | None:
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


async def window_stats(db: Database, name: str, since: datetime) -> WindowStats:
    async with db.read() as s:
        rows = (
            await s.execute(
                select(ChannelAttempt.outcome, ChannelAttempt.latency_ms).where(
                    ChannelAttempt.channel == name, ChannelAttempt.created_at >= since
                )
            )
        ).all()
        served = (
            await s.execute(
                select(
                    func.coalesce(func.sum(Job.n_succeeded), 0),
                    func.coalesce(func.sum(Job.upstream_cost_minor), 0),
                    func.coalesce(func.sum(Job.cost_minor), 0),
                ).where(Job.channel == name, Job.finished_at >= since)
            )
        ).one()
    latencies = sorted(latency for _, latency in rows)
    return WindowStats(
        calls=len(rows),
        ok=sum(1 for outcome, _ in rows if outcome == "ok"),
        latency_ms={
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
        },
        images=int(served[0]),
        upstream_cost_minor=int(served[1]),
        revenue_minor=int(served[2]),
    )


async def stats(db: Database, name: str) -> dict[str, WindowStats]:
    """The last hour's and the last day's statistics of a channel."""
    now = utcnow()
    return {
        "hour": await window_stats(db, name, now - timedelta(hours=1)),
        "day": await window_stats(db, name, now - timedelta(days=1)),
    }


async def attempts_of(db: Database, job_id: str) -> list[ChannelAttempt]:
    """A relayed job's upstream calls, in order."""
    async with db.read() as s:
        return list(
            (
                await s.scalars(
                    select(ChannelAttempt)
                    .where(ChannelAttempt.job_id == job_id)
                    .order_by(ChannelAttempt.id)
                )
            ).all()
        )
