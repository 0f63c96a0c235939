"""The job queue: a table that is both the queue and the record of every request.

Every state change is a conditional UPDATE (`WHERE status = ... AND worker_id = ...`), so a
job is settled at most once even when a lease lapses, a client times out, or two workers
race; the usage change rides in the same transaction.

Each change that someone may be waiting for is also announced through `Notifications`
(queued, finished, cancelled), so that waiters in this process react at once; waiters in
other processes find it by polling.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from pixgate.accounts import billing
from pixgate.db import ApiKey, Database, Job, utcnow
from pixgate.errors import PixgateError
from pixgate.queue.claims import ClaimFilter, RelayRecord
from pixgate.queue.notifications import InProcessNotifications, Notifications
from pixgate.queue.rows import queued_job
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest

BATCH_CANDIDATES = 64  # queued jobs looked at when filling a batch


def _claimed_by(worker_id: str, lease_seconds: float) -> dict[str, Any]:
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
class SettleOutcome:
    settled: bool  # False when the job was no longer ours (timed out, reaped)


@dataclass(frozen=True)
class Admission:
    """Who is asking, and the account limits that apply to them."""

    key: ApiKey
    plan: str = "free"
    concurrency: int | None = None  # in-flight jobs per account; None: unlimited


class JobQueue:
    def __init__(
        self,
        db: Database,
        max_queue: int,
        billing_enabled: bool = True,
        currency: str = "CNY",
        notifications: Notifications | None = None,
    ):
        self.db = db
        self.max_queue = max_queue
        self.billing_enabled = billing_enabled
        self.currency = currency
        # What workers, waiters and the webhook deliverer of this process listen to.
        self.notifications = notifications or InProcessNotifications()

    # --- admission -------------------------------------------------------------------
    async def enqueue(
        self,
        req: GenerationRequest,
        spec: ModelSpec,
        who: Admission | None,
        request_id: str | None,
        task: dict[str, Any] | None = None,
    ) -> str:
        """Check the account's in-flight limit, reserve the key's cap and the price, and
        insert the job, in one transaction: all of it happens or none of it. `task` holds
        extra job columns of an asynchronous task (its webhook), stored in the same insert."""
        job_id = uuid.uuid4().hex
        key = who.key if who else None
        price = spec.price_minor if self.billing_enabled else 0
        async with self.db.write() as s:
            depth = await s.scalar(
                select(func.count()).select_from(Job).where(Job.status == "queued")
            )
            if depth >= self.max_queue:
                raise PixgateError(
                    "queue_full",
                    args_={"depth": depth, "retry_after": 5},
                    headers={"Retry-After": "5"},
                )
            if who is not None and who.concurrency is not None:
                in_flight = await s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.user_id == key.user_id, Job.status.in_(("queued", "running")))
                )
                if in_flight >= who.concurrency:
                    raise PixgateError(
                        "too_many_in_flight",
                        args_={"limit": who.concurrency, "plan": who.plan},
                        headers={"Retry-After": "1"},
                    )
            cap_reserved = False
            if key is not None and self.billing_enabled:
                cap_reserved = await billing.reserve(s, key, req.n, price, job_id, self.currency)
            await s.execute(
                insert(Job).values(
                    **queued_job(
                        job_id,
                        kind=req.kind,
                        model=spec.name,
                        request=req.model_dump(mode="json"),
                        n=req.n,
                        seed=req.seed,
                        key=key,
                        request_id=request_id,
                        price_minor=price,
                        cap_reserved=cap_reserved,
                    ),
                    **(task or {}),
                )
            )
        self.notifications.job_queued(spec.name, req.kind)
        return job_id

    async def enqueue_unbilled(
        self, kind: str, model: str, request: dict[str, Any], n: int, seed: int
    ) -> str:
        """Queue a job no account pays for and no key owns (a worker-side step such as
        drawing marks on copies of a finished job's images); returns its id."""
        job_id = uuid.uuid4().hex
        async with self.db.write() as s:
            await s.execute(
                insert(Job).values(
                    **queued_job(job_id, kind=kind, model=model, request=request, n=n, seed=seed)
                )
            )
        self.notifications.job_queued(model, kind)
        return job_id

    # --- workers ---------------------------------------------------------------------
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
        first."""
        oldest = (
            select(Job.id)
            .where(Job.status == "queued", *(only.conditions() if only else ()))
            .order_by(Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.db.write() as s:
            jobs = (
                await s.scalars(
                    update(Job)
                    .where(Job.id.in_(oldest.scalar_subquery()), Job.status == "queued")
                    .values(**_claimed_by(worker_id, lease_seconds))
                    .returning(Job)
                )
            ).all()
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
                    .values(**_claimed_by(worker_id, lease_seconds))
                    .returning(Job)
                )
            ).all()
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    async def renew(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        async with self.db.write() as s:
            result = await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)
                .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
            )
        return result.rowcount == 1

    async def succeed(
        self,
        job: Job,
        worker_id: str,
        images: list[dict[str, Any]],
        inference_seconds: float,
        relay: RelayRecord | None = None,
    ) -> SettleOutcome:
        """Mark the job done and charge its successful images, in one transaction (with
        a relayed job's channel, upstream cost and calls)."""
        ok = len(images)
        async with self.db.write() as s:
            done = await s.scalar(
                update(Job)
                .where(Job.id == job.id, Job.status == "running", Job.worker_id == worker_id)
                .values(
                    status="succeeded" if ok else "failed",
                    progress=1.0,
                    error_code=None if ok else "generation_failed",
                    error_message=None if ok else "no image could be produced",
                    images=images,
                    n_succeeded=ok,
                    cost_minor=ok * job.price_minor,
                    inference_seconds=inference_seconds,
                    finished_at=utcnow(),
                    lease_until=None,
                    **(relay.columns(ok) if relay else {}),
                )
                .returning(Job)
            )
            if done is None:
                return SettleOutcome(False)
            if relay is not None:
                await relay.write(s, job.id)
            await self._settle(s, job, ok)
        self.notifications.job_finished(job.id, webhook=done.webhook_url is not None)
        return SettleOutcome(True)

    async def fail(
        self,
        job_id: str,
        code: str,
        message: str,
        worker_id: str | None = None,
        statuses: tuple[str, ...] = ("running",),
        relay: RelayRecord | None = None,
    ) -> SettleOutcome:
        """Finish the job as failed and release its whole reservation (nothing charged);
        a relayed job's failed upstream calls are recorded with it."""
        conditions = [Job.id == job_id, Job.status.in_(statuses)]
        if worker_id is not None:
            conditions.append(Job.worker_id == worker_id)
        async with self.db.write() as s:
            job = await s.scalar(
                update(Job)
                .where(*conditions)
                .values(
                    status="failed",
                    error_code=code,
                    error_message=message[:2000],
                    finished_at=utcnow(),
                    lease_until=None,
                )
                .returning(Job)
            )
            if job is None:
                return SettleOutcome(False)
            if relay is not None:
                await relay.write(s, job_id)
            await self._settle(s, job, 0)
        if worker_id is None and job.worker_id is not None:
            # Finished by someone other than its worker (owner, timeout): stop generating.
            self.notifications.job_cancelled(job_id)
        self.notifications.job_finished(job_id, webhook=job.webhook_url is not None)
        return SettleOutcome(True)

    async def _settle(self, session, job: Job, succeeded: int) -> None:
        """Move usage for a job that is finishing, inside its finishing transaction."""
        if self.billing_enabled:
            await billing.settle(
                session,
                key_id=job.key_id,
                user_id=job.user_id,
                job_id=job.id,
                reserved=job.n,
                succeeded=succeeded,
                price_minor=job.price_minor,
                cap_reserved=job.cap_reserved,
            )

    async def set_progress(self, job_id: str, worker_id: str, progress: float) -> None:
        async with self.db.write() as s:
            await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)
                .values(progress=progress)
            )

    async def cancel(self, job_id: str, user_id: str) -> SettleOutcome:
        """The owner cancels a queued or running job: it is failed with `cancelled` and its
        reservation returned at once; a running generation stops at its next step."""
        async with self.db.read() as s:
            owner = await s.scalar(select(Job.user_id).where(Job.id == job_id))
        if owner is None or owner != user_id:
            raise PixgateError("job_not_found", args_={"job": job_id})
        return await self.fail(
            job_id, "cancelled", "cancelled by the client", statuses=("queued", "running")
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

    # --- clients ---------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as s:
            return await s.get(Job, job_id)

    async def wait(
        self, job_id: str, timeout: float, max_poll: float = 1.0, first_poll: float = 0.05
    ) -> Job | None:
        """Wait until the job finishes or `timeout` passes, and return its row.

        A finish in this process ends the wait at once (its notification); one in another
        process is noticed by polling, at intervals growing from `first_poll` to `max_poll`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        poll = first_poll
        with self.notifications.watch_finished(job_id) as finished:
            while True:
                finished.clear()  # clear, look, then wait: a finish in between still wakes
                job = await self.get(job_id)
                remaining = deadline - loop.time()
                if job is None or job.finished or remaining <= 0:
                    return job
                await finished.wait(min(poll, remaining))
                poll = min(poll * 2, max_poll)

    async def depth(self) -> int:
        async with self.db.read() as s:
            return (
                await s.scalar(select(func.count()).select_from(Job).where(Job.status == "queued"))
                or 0
            )
