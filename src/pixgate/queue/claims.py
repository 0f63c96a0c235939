"""Which queued jobs a worker lane may claim, and what a relayed job records when it
finishes: its channel, the upstream cost and one `channel_attempts` row per call."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.backends import UpstreamAttempt
from pixgate.db import ChannelAttempt, Job, utcnow

MARK_KIND = "mark"  # a free job drawing marks on copies (queue/marks.py)


@dataclass(frozen=True)
class ClaimFilter:
    """Generation jobs of these models, and mark jobs when `marks` (they run on a
    worker's post thread whatever their model)."""

    models: frozenset[str]
    marks: bool = False

    def __init__(self, models: Collection[str], marks: bool = False):
        object.__setattr__(self, "models", frozenset(models))
        object.__setattr__(self, "marks", marks)

    def accepts(self, model: str, kind: str | None) -> bool:
        """Whether a queued job of (model, kind) is one this filter claims."""
        if kind == MARK_KIND:
            return self.marks
        return model in self.models

    def conditions(self) -> list[Any]:
        generations = Job.model.in_(list(self.models)) & (Job.kind != MARK_KIND)
        if self.marks:
            return [or_(generations, Job.kind == MARK_KIND)]
        return [generations]


@dataclass
class RelayRecord:
    """A relayed job's channel (the one whose images are kept), every upstream call, and
    the upstream cost of the images kept."""

    channel: str | None
    attempts: list[UpstreamAttempt] = field(default_factory=list)
    cost_per_image_minor: int = 0

    def columns(self, images_kept: int) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "upstream_cost_minor": images_kept * self.cost_per_image_minor,
        }

    async def write(self, session: AsyncSession, job_id: str) -> None:
        if not self.attempts:
            return
        now = utcnow()
        await session.execute(
            insert(ChannelAttempt),
            [
                {
                    "job_id": job_id,
                    "channel": a.channel,
                    "outcome": a.outcome,
                    "http_status": a.http_status,
                    "latency_ms": a.latency_ms,
                    "images": a.images,
                    "cost_minor": a.cost_minor,
                    "error": a.error,
                    "created_at": now,
                }
                for a in self.attempts
            ],
        )
