"""Claiming: which queued jobs a worker lane may claim and the claims themselves (leases,
progress, requeues, rescuing lapsed jobs), and what a relayed job records when it
finishes: its channel, the upstream cost and one `channel_attempts` row per call."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.backends import UpstreamAttempt
from pixgate.db import ChannelAttempt, Database, Job, utcnow
from pixgate.queue.notifications import Notifications
from pixgate.spec.request import GenerationRequest

BATCH_CANDIDATES = 64  # queued jobs looked at when filling a batch

MARK_KIND = "mark"  # a free job drawing marks on copies (queue/marks.py)


def claimed_by(worker_id: str, lease_seconds: float) -> dict[str, Any]:
    """The column values of a job a worker has just claimed."""
    now = utcnow()
    return {
        "status": "running",
        "worker_id": worker_id,
        "lease_until": now + timedelta(seconds=lease_seconds),
        "started_at": now,
        "attempts": Job.attempts + 1,
    }


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


class Claims:
    """What workers do with the job table: claim queued jobs (one, several, or a batch
    sharing a forward pass), renew leases, report progress, give jobs back, and rescue
    jobs whose worker vanished. Mixed into JobQueue, which provides `db` and
    `notifications`."""

    db: Database
    notifications: Notifications

    async def claim(
        self, worker_id: str, lease_seconds: float, only: ClaimFilter | None = None
    ) -> Job | None:
        """Take the oldest queued job (of the models `only` allows, if given)."""
        jobs = await self.claim_many(worker_id, lease_seconds, only, 1)
        return jobs[0] if jobs else None

    async def claim_many(
        self, worker_id: str, lease_seconds: float, only: ClaimFilter | None, limit: int
    ) -> list[Job]:
        """Take up to `limit` of the oldest queued jobs in one transaction (FOR UPDATE SKIP
        LOCKED on PostgreSQL; the write transaction serializes this on SQLite), oldest
        first.

        One job: one UPDATE whose `id = (subquery)` PostgreSQL evaluates once. Several:
        the ids are selected first, then updated. Not `id IN (subquery ... LIMIT n FOR
        UPDATE SKIP LOCKED)`: PostgreSQL may rescan such a subquery per row as a semi-join,
        and each rescan skips the rows the previous one locked, so it claims every queued
        job instead of n."""
        oldest = (
            select(Job.id)
            .where(Job.status == "queued", *(only.conditions() if only else ()))
            .order_by(Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = update(Job).values(**claimed_by(worker_id, lease_seconds)).returning(Job)
        async with self.db.write() as s:
            if limit == 1:
                chosen = Job.id == oldest.scalar_subquery()
            else:
                ids = list((await s.scalars(oldest)).all())
                if not ids:
                    return []
                chosen = Job.id.in_(ids)
            jobs = (await s.scalars(claim.where(chosen, Job.status == "queued"))).all()
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    async def claim_compatible(
        self, first: Job, worker_id: str, lease_seconds: float, room: int
    ) -> list[Job]:
        """Claim queued jobs that can share `first`'s forward pass (same batch key), oldest
        first, while their images fit in `room` more images."""
        key = GenerationRequest.model_validate(first.request).batch_key()
        if key is None or room <= 0:
            return []
        async with self.db.write() as s:
            candidates = (
                await s.execute(
                    select(Job.id, Job.n, Job.request)
                    .where(Job.status == "queued", Job.model == first.model, Job.kind == first.kind)
                    .order_by(Job.created_at)
                    .limit(BATCH_CANDIDATES)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            chosen = []
            for job_id, n, request in candidates:
                if n <= room and GenerationRequest.model_validate(request).batch_key() == key:
                    chosen.append(job_id)
                    room -= n
                if room <= 0:
                    break
            if not chosen:
                return []
            jobs = (
                await s.scalars(
                    update(Job)
                    .where(Job.id.in_(chosen), Job.status == "queued")
                    .values(**claimed_by(worker_id, lease_seconds))
                    .returning(Job)
                )
            ).all()
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    async def renew_many(
        self, job_ids: Collection[str], worker_id: str, lease_seconds: float
    ) -> set[str]:
        """Renew the leases of several jobs in one UPDATE; the ids still held."""
        if not job_ids:
            return set()
        async with self.db.write() as s:
            renewed = await s.scalars(
                update(Job)
                .where(
                    Job.id.in_(list(job_ids)),
                    Job.status == "running",
                    Job.worker_id == worker_id,
                )
                .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
                .returning(Job.id)
            )
            return set(renewed.all())

    async def set_progress(self, job_id: str, worker_id: str, progress: float) -> None:
        async with self.db.write() as s:
            await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)
                .values(progress=progress)
            )

    async def requeue(self, job_id: str, worker_id: str) -> bool:
        """Give a running job back to the queue (graceful shutdown)."""
        async with self.db.write() as s:
            result = await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)
                .values(status="queued", worker_id=None, lease_until=None, started_at=None)
            )
        if result.rowcount:
            self.notifications.job_queued()
        return result.rowcount == 1

    async def reap_lapsed(self, max_attempts: int) -> tuple[int, int]:
        """Jobs whose worker stopped renewing: requeue them, or fail and release them after
        `max_attempts`. Returns (requeued, failed)."""
        now = utcnow()
        async with self.db.read() as s:
            lapsed = (
                await s.execute(
                    select(Job.id, Job.attempts, Job.worker_id).where(
                        Job.status == "running", Job.lease_until < now
                    )
                )
            ).all()
        requeued = failed = 0
        for job_id, attempts, worker_id in lapsed:
            if attempts >= max_attempts:
                message = f"worker {worker_id} stopped after {attempts} attempts"
                if (await self.fail(job_id, "worker_lost", message, worker_id=worker_id)).settled:
                    failed += 1
            else:
                async with self.db.write() as s:
                    result = await s.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == "running", Job.lease_until < now)
                        .values(status="queued", worker_id=None, lease_until=None)
                    )
                requeued += result.rowcount
        if requeued:
            self.notifications.job_queued()
        return requeued, failed
