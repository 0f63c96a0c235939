"""The relay lane of a worker: relayed jobs (models served by upstream channels) run many
at once on the event loop, one job per call, up to `relay_concurrency`.

They wait on the network, not on a GPU, so they never go through the engine thread and
never wait behind a generation. Each job goes the same way as a local one: claimed with
a lease, progress reported, cancelled when its owner cancels it (the call is abandoned),
its images through the post chain and storage, settled once, with the channel, the
attempts and the upstream cost recorded in the same transaction. Channel states (breaker,
disabled) are written to `channel_states` for the admin view and read back from it, so an
admin's "enable" reaches every worker and a disabled channel stays disabled after a
restart.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import structlog

from pixgate.backends import BackendError, Backends
from pixgate.db import Job
from pixgate.metrics import Metrics
from pixgate.processing.chain import PostTools
from pixgate.queue import channels
from pixgate.queue.claims import ClaimFilter, RelayRecord
from pixgate.queue.jobs import JobQueue
from pixgate.queue.storing import settle_or_discard, store_images
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog
from pixgate.spec.request import GenerationRequest
from pixgate.storage.base import Storage

if TYPE_CHECKING:
    from pixgate.backends.relay.backend import RelayBackend

log = structlog.get_logger("pixgate.queue.relay")

WATCH_SECONDS = 0.2  # how often running jobs are checked for cancellation
STATE_REFRESH_SECONDS = 5.0  # how often disabled flags are read back from the database
PROGRESS_AFTER = 0.5  # a job's progress is written once it has run this long


class RelayLane:
    def __init__(
        self,
        worker_id: str,
        settings: Settings,
        catalog: Catalog,
        queue: JobQueue,
        storage: Storage,
        metrics: Metrics,
        backends: Backends,
        models: list[str],
        post_executor: Executor,
        tools: PostTools | None = None,
    ):
        self.worker_id = worker_id
        self.settings = settings
        self.catalog = catalog
        self.queue = queue
        self.storage = storage
        self.metrics = metrics
        self.backends = backends
        self.only = ClaimFilter(models)
        self._post = post_executor
        self._tools = tools
        self._room = asyncio.Event()  # set when a running job ends
        self._reserved = 0  # rooms held for jobs being admitted in this process
        self._backlog = False  # the last claim filled every room: jobs may be queued
        self._running: dict[str, asyncio.Task] = {}
        self._stopping = False
        self._aborting = False
        self._queued = queue.notifications.queued_signal(self.only.accepts)
        self._backend: RelayBackend | None = None
        self._tasks: list[asyncio.Task] = []
        self._unsaved: set[str] = set()  # channels whose state change is being written
        self._started: dict[str, float] = {}  # running job -> monotonic start
        self._settling: set[str] = set()  # running jobs whose call is over: being settled
        self._progress_due: dict[str, float] = {}  # running job -> progress not yet written

    def start(self) -> None:
        self.queue.add_taker(self)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="pixgate-relay"),
            asyncio.create_task(self._watch_loop(), name="pixgate-relay-watch"),
        ]

    def backend(self) -> RelayBackend:
        """The relay backend, made once; its router reports state changes here."""
        if self._backend is None:
            spec = self.catalog.get(next(iter(self.only.models)))
            assert spec is not None
            backend: RelayBackend = self.backends.get(spec)  # type: ignore[assignment]
            backend.router.listeners.append(self._state_changed)
            self._backend = backend
        return self._backend

    # --- claiming ------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        try:
            await self._load_states()
        except Exception:
            log.warning("reading channel states failed", exc_info=True)
        limit = self.settings.relay_concurrency
        while not self._stopping:
            free = limit - len(self._running) - self._reserved
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            self._queued.clear()  # an enqueue from now on wakes the idle wait
            try:  # one transaction claims as many queued jobs as there is room for
                jobs = await self.queue.claim_many(
                    self.worker_id, self.settings.lease_seconds, self.only, free
                )
            except Exception:
                log.exception("relay claim failed")
                jobs = []
            for job in jobs:
                self._launch(job)
            self._backlog = len(jobs) == free
            if len(jobs) < free:  # the queue is empty now: wait for the next enqueue
                await self._queued.wait(self.settings.worker_poll_seconds)

    def _launch(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"relay-{job.id}")
        self._running[job.id] = task
        self._started[job.id] = time.monotonic()
        task.add_done_callback(lambda _t, job_id=job.id: self._done(job_id))

    # --- taking jobs at admission (queue.Taker) ------------------------------------------
    @property
    def slot(self) -> tuple[str, float]:
        return self.worker_id, self.settings.lease_seconds

    def accepts(self, model: str, kind: str | None) -> bool:
        return self.only.accepts(model, kind)

    def reserve(self) -> bool:
        """Room for a job admitted in this process, unless queued jobs wait for it."""
        busy = len(self._running) + self._reserved
        if self._stopping or self._backlog or busy >= self.settings.relay_concurrency:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved -= 1

    def adopt(self, job: Job) -> None:
        self._reserved -= 1
        self._launch(job)

    def _done(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._settling.discard(job_id)
        self._started.pop(job_id, None)
        self._progress_due.pop(job_id, None)
        self.queue.notifications.forget(job_id)
        self._room.set()

    # --- one job -------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        log_ = log.bind(job_id=job.id, request_id=job.request_id, model=job.model)
        try:
            spec = self.catalog.get(job.model)
            if spec is None:
                await self.queue.fail(
                    job.id, "model_not_found", f"model {job.model} removed", self.worker_id
                )
                return
            req = GenerationRequest.model_validate(job.request)
            result = await self.backend().generate(req, spec, lambda p: self._progress(job.id, p))
            self._settling.add(job.id)
        except asyncio.CancelledError:
            if self._aborting and await self.queue.requeue(job.id, self.worker_id):
                log_.info("relayed job requeued at shutdown")
            return  # else cancelled by its owner, timed out or taken over: already settled
        except BackendError as exc:
            self._settling.add(job.id)
            self._observe(exc.attempts)
            log_.info("relayed job failed", code=exc.code, error=exc.message)
            await self.queue.fail(
                job.id, exc.code, exc.message, self.worker_id, relay=RelayRecord(None, exc.attempts)
            )
            return
        except Exception as exc:
            self._settling.add(job.id)
            log_.exception("relayed job crashed")
            await self.queue.fail(job.id, "generation_failed", type(exc).__name__, self.worker_id)
            return
        self._observe(result.attempts)
        channel = self.settings.channel(result.channel or "")
        relay = RelayRecord(
            result.channel, result.attempts, channel.upstream_price_minor if channel else 0
        )
        try:
            loop = asyncio.get_running_loop()
            stored = await loop.run_in_executor(
                self._post,
                store_images,
                self.storage,
                self.settings,
                job.id,
                req,
                result.images,
                self._tools,
            )
            seconds = result.inference_seconds
            if await settle_or_discard(
                self.queue, self.storage, job, self.worker_id, stored, seconds, relay
            ):
                kept = len(stored.images)
                self.metrics.images_generated.labels(model=job.model).inc(kept)
                log_.info("relayed job finished", channel=result.channel, images=kept)
        except Exception as exc:
            log_.exception("storing a relayed result failed")
            await self.queue.fail(job.id, "generation_failed", type(exc).__name__, self.worker_id)

    def _progress(self, job_id: str, progress: float) -> None:
        """Noted now, written by the watch loop once the job has run PROGRESS_AFTER
        seconds: a call that answers at once costs no progress writes."""
        self._progress_due[job_id] = progress

    async def _write_progress(self, now: float) -> None:
        for job_id, progress in list(self._progress_due.items()):
            started = self._started.get(job_id)
            if started is None:
                self._progress_due.pop(job_id, None)
            elif now - started >= PROGRESS_AFTER:
                self._progress_due.pop(job_id, None)
                try:
                    await self.queue.set_progress(job_id, self.worker_id, progress)
                except Exception:
                    log.warning("progress write failed", job_id=job_id, exc_info=True)

    def _observe(self, attempts) -> None:
        for a in attempts:
            self.metrics.channel_requests.labels(channel=a.channel, outcome=a.outcome).inc()
            self.metrics.channel_latency.labels(channel=a.channel).observe(a.latency_ms / 1000)

    # --- leases, cancellation, channel states --------------------------------------------
    async def _watch_loop(self) -> None:
        """Cancel the calls of jobs cancelled here; renew leases (a job whose renewal is
        refused was settled or taken over elsewhere: its call is abandoned); read channel
        states back from the database."""
        cancelled = self.queue.notifications.is_cancelled
        renew_every = self.settings.lease_seconds / 3
        renewed = refreshed = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            for job_id, task in list(self._running.items()):
                if cancelled(job_id):
                    task.cancel()
            now = time.monotonic()
            if self._progress_due:
                await self._write_progress(now)
            if now - renewed >= renew_every:
                renewed = now
                await self._renew()
            if self._backend is not None and now - refreshed >= STATE_REFRESH_SECONDS:
                refreshed = now
                try:
                    await self._load_states()
                except Exception:
                    log.warning("reading channel states failed", exc_info=True)

    async def _renew(self) -> None:
        """One UPDATE renews every running job not already being settled; a job whose
        renewal is refused while its call is still out was settled or taken over
        elsewhere, and its call is abandoned."""
        ids = [i for i in self._running if i not in self._settling]
        try:
            held = await self.queue.renew_many(ids, self.worker_id, self.settings.lease_seconds)
        except Exception:  # a database hiccup: the leases have two more chances
            log.warning("lease renewal failed", jobs=len(ids), exc_info=True)
            return
        for job_id in ids:
            task = self._running.get(job_id)
            if job_id not in held and task is not None and job_id not in self._settling:
                log.warning("lease lost", job_id=job_id, worker_id=self.worker_id)
                task.cancel()

    async def _load_states(self) -> None:
        """Apply disabled flags from the database (an admin's enable, another worker's
        disable) to this worker's router."""
        states = await channels.load_states(self.queue.db)
        router = self.backend().router
        for name, runtime in router.channels.items():
            row = states.get(name)
            if name in self._unsaved or row is None:
                continue  # this worker's own change is on its way to the database
            reason = (row.reason or "disabled") if row.disabled else None
            if reason != runtime.disabled:
                router.set_disabled(name, reason)

    def _state_changed(self, name: str, state: str, disabled: bool, reason: str | None) -> None:
        self.metrics.channel_state.labels(channel=name).set(channels.STATE_VALUES.get(state, 0))
        self._unsaved.add(name)

        async def save() -> None:
            try:
                await channels.save_state(self.queue.db, name, state, disabled, reason)
            except Exception:
                log.warning("saving a channel state failed", channel=name, exc_info=True)
            finally:
                self._unsaved.discard(name)

        task = asyncio.create_task(save())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    # --- stopping ------------------------------------------------------------------------
    async def stop(self, grace: float) -> None:
        """Stop claiming; let running calls finish within `grace` seconds, then abandon
        the rest and put their jobs back in the queue."""
        self._stopping = True
        self.queue.remove_taker(self)
        self._queued.set()
        self._room.set()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        self._aborting = True
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._backend is not None:
            await self._backend.aclose()
