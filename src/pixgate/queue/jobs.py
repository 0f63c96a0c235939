"""The job queue: a table that is both the queue and the record of every request.

Every state change is a conditional UPDATE (`WHERE status = ... AND worker_id = ...`), so a
job is settled at most once even when a lease lapses, a client times out, or two workers
race; the usage change rides in the same transaction.

Each change that someone may be waiting for is also announced through `Notifications`
(queued, finished, cancelled), so that waiters react at once: in this process directly, in
other processes through PostgreSQL's LISTEN/NOTIFY (queue/notify_pg.py); on SQLite, and for
any notification lost, they find it by polling.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update

from pixgate.accounts import billing
from pixgate.db import ApiKey, Database, Job, utcnow
from pixgate.errors import PixgateError
from pixgate.queue.claims import Claims, RelayRecord, claimed_by
from pixgate.queue.notifications import InProcessNotifications, Notifications
from pixgate.queue.rows import queued_job
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest


class Taker(Protocol):
    """A worker lane that takes jobs at admission (`JobQueue.add_taker`)."""

    slot: tuple[str, float]  # (worker id, lease seconds) a taken job is claimed with

    def accepts(self, model: str, kind: str | None) -> bool: ...

    def reserve(self) -> bool:
        """Hold room for one job, if there is room (and no queued backlog to serve first)."""
        ...

    def release(self) -> None:
        """Give back a reserved room: the job was not admitted."""
        ...

    def adopt(self, job: Job) -> None:
        """Run a job claimed for it at admission, in its reserved room."""
        ...


@dataclass(frozen=True)
class SettleOutcome:
    settled: bool  # False when the job was no longer ours (timed out, reaped)


@dataclass(frozen=True)
class Admission:
    """Who is asking, and the account limits that apply to them."""

    key: ApiKey
    plan: str = "free"
    concurrency: int | None = None  # in-flight jobs per account; None: unlimited


class JobQueue(Claims):
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
        self._takers: list[Taker] = []

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
        taker: Taker | None = None
        try:
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
                    cap_reserved = await billing.reserve(
                        s, key, req.n, price, job_id, self.currency
                    )
                row = queued_job(
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
                )
                # A worker lane of this process with room takes the job in this very
                # transaction (no claim transaction, no wake-up): the job starts running.
                taker = self._taker(spec.name, req.kind)
                if taker is not None:
                    worker_id, lease = taker.slot
                    row.update(claimed_by(worker_id, lease), attempts=1)
                    job = await s.scalar(insert(Job).values(**row, **(task or {})).returning(Job))
                else:
                    await s.execute(insert(Job).values(**row, **(task or {})))
        except BaseException:
            if taker is not None:
                taker.release()
            raise
        if taker is not None:
            taker.adopt(job)
        else:
            self.notifications.job_queued(spec.name, req.kind)
        return job_id

    # --- in-process hand-over --------------------------------------------------------
    def add_taker(self, taker: Taker) -> None:
        """A worker lane of this process that takes new jobs at admission while it has
        room (the relay lane: its jobs wait on the network, so starting them at once is
        all gain)."""
        self._takers.append(taker)

    def remove_taker(self, taker: Taker) -> None:
        if taker in self._takers:
            self._takers.remove(taker)

    def _taker(self, model: str, kind: str) -> Taker | None:
        for taker in self._takers:
            if taker.accepts(model, kind) and taker.reserve():
                return taker
        return None

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

    # --- settling --------------------------------------------------------------------
    async def succeed(
        self,
        job: Job,
        worker_id: str,
        images: list[dict[str, Any]],
        inference_seconds: float,
        relay: RelayRecord | None = None,
        failure: tuple[str, str] | None = None,
    ) -> SettleOutcome:
        """Mark the job done and charge its successful images, in one transaction (with
        a relayed job's channel, upstream cost and calls). With no image, the job fails
        with `failure` (code, message), or as generation_failed."""
        ok = len(images)
        code, message = failure or ("generation_failed", "no image could be produced")
        async with self.db.write() as s:
            done = await s.scalar(
                update(Job)
                .where(Job.id == job.id, Job.status == "running", Job.worker_id == worker_id)
                .values(
                    status="succeeded" if ok else "failed",
                    progress=1.0,
                    error_code=None if ok else code,
                    error_message=None if ok else message,
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
        self.notifications.job_finished(job.id, done.webhook_url is not None, done)
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
        self.notifications.job_finished(job_id, job.webhook_url is not None, job)
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

    # --- clients ---------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as s:
            return await s.get(Job, job_id)

    async def wait(
        self,
        job_id: str,
        timeout: float,
        max_poll: float = 1.0,
        first_poll: float = 0.05,
        look_first: bool = True,
    ) -> Job | None:
        """Wait until the job finishes or `timeout` passes, and return its row.

        A finish in this process ends the wait at once (its notification, which carries
        the row: no read); one in another process through LISTEN/NOTIFY on PostgreSQL,
        else (and should a notification be lost) by polling, at intervals growing from
        `first_poll` to `max_poll`. `look_first=False`: the job was just
        queued for a worker of this process, so wait `first_poll` for its notification
        before reading the row.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        poll = first_poll
        skip_read = not look_first
        with self.notifications.watch_finished(job_id) as finished:
            while True:
                finished.clear()  # clear, look, then wait: a finish in between still wakes
                job = self.notifications.finished_row(job_id)
                if job is None and not skip_read:
                    job = await self.get(job_id)
                    if job is None:
                        return None
                skip_read = False
                if job is not None and job.finished:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return job if job is not None else await self.get(job_id)
                await finished.wait(min(poll, remaining))
                poll = min(poll * 2, max_poll)

    async def depth(self) -> int:
        async with self.db.read() as s:
            return (
                await s.scalar(select(func.count()).select_from(Job).where(Job.status == "queued"))
                or 0
            )
