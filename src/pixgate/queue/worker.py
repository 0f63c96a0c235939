"""The worker: claims jobs, runs their model's backend on its own thread (never the event
loop), runs the post chain, stores the images and settles the job.

It runs inside `pixgate serve` (embedded) or alone as `pixgate worker` on a GPU machine
pointed at the same database (scaled). The model's `source` picks the backend
(pixgate.backends); a worker serves the backends its machine has.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from pixgate.backends import (
    BackendError,
    BackendResult,
    Backends,
    backend_kind,
    check_catalog,
    is_relayed,
)
from pixgate.db import Job
from pixgate.metrics import Metrics
from pixgate.queue.claims import ClaimFilter
from pixgate.queue.jobs import JobQueue
from pixgate.queue.marks import MARK_KIND, MarkRequest, draw_marks
from pixgate.queue.relay_lane import RelayLane
from pixgate.queue.storing import Stored, post_tools, settle_or_discard, store_images
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog, ModelSpec
from pixgate.spec.request import GenerationRequest
from pixgate.storage.base import Storage

log = structlog.get_logger("pixgate.queue.worker")


PROGRESS_INTERVAL = 0.5  # seconds between progress writes for one job


class JobCancelled(Exception):
    """Raised from the step callback to stop a generation early."""


@dataclass
class Batch:
    """Jobs claimed together to share one forward pass (usually one), with one task that
    renews all their leases. A job whose lease was lost (another worker owns it now) is
    dropped: it is no longer renewed, and its images are not stored."""

    jobs: list[Job]
    renewer: asyncio.Task | None = None
    lost: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)

    @property
    def ids(self) -> list[str]:
        return [job.id for job in self.jobs]

    def held(self) -> list[Job]:
        """The jobs still ours and not yet settled: the ones to renew."""
        return [j for j in self.jobs if j.id not in self.lost and j.id not in self.settled]

    def stop_renewing(self) -> None:
        if self.renewer is not None:
            self.renewer.cancel()


@dataclass
class Finished:
    job: Job
    req: GenerationRequest
    result: BackendResult


class Worker:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        queue: JobQueue,
        storage: Storage,
        metrics: Metrics,
        backends: Backends | None = None,
        models: Collection[str] | None = None,
    ):
        """`models`: the catalog models this worker serves (default: all of them); jobs
        of the others are left to workers that have their backend."""
        check_catalog(catalog)  # ValueError naming the model: the server does not start
        self.settings = settings
        self.catalog = catalog
        self.queue = queue
        self.storage = storage
        self.metrics = metrics
        self.backends = backends or Backends(settings, storage)
        self.tools = post_tools(settings)  # label key, SR network, classifier, C2PA signer
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixgate-engine")
        self._post_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixgate-post")
        self._finish_slots = asyncio.Semaphore(2)
        self._finishing: set[asyncio.Task] = set()
        self._stopping = False
        self._abort = False
        self._task: asyncio.Task | None = None
        self.ready = False  # backends of the catalog made and models preloaded
        # The engine thread runs local models and mark jobs (woken by in-process queueing,
        # else polling); relayed models go to the relay lane, many at once on the loop.
        served = [spec for spec in catalog if models is None or spec.name in models]
        relayed = [spec.name for spec in served if is_relayed(spec)]
        self._engine_jobs = ClaimFilter([s.name for s in served if not is_relayed(s)], marks=True)
        self._queued = queue.notifications.queued_signal(self._engine_jobs.accepts)
        self.relay = (
            RelayLane(
                self.id,
                settings,
                catalog,
                queue,
                storage,
                metrics,
                self.backends,
                relayed,
                self._post_executor,
                self.tools,
            )
            if relayed
            else None
        )

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="pixgate-worker")

    async def run(self) -> None:
        if self.relay is not None:
            self.relay.start()
        if self.settings.preload:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._preload)
        self.ready = True
        log.info("worker started", worker_id=self.id)
        prefetched: Batch | None = None
        while not self._stopping:
            # At most one batch finishing (post chain, store, settle) while the next runs.
            await self._finish_slots.acquire()
            if prefetched is not None:  # claimed a while ago: jobs may have queued since
                await self._top_up(prefetched)
            claimed = prefetched or await self._claim()
            prefetched = None
            if claimed is None:
                self._finish_slots.release()
                await self._queued.wait(self.settings.worker_poll_seconds)
                continue
            if len(claimed.jobs) > 1:
                self.metrics.batch_size.observe(sum(job.n for job in claimed.jobs))
            generation = asyncio.create_task(self.process(claimed))
            if self.settings.worker_prefetch and not self._stopping:
                # Claim the next job while the backend works, so it starts without a gap.
                prefetched = await self._claim()
            await generation
        if prefetched is not None:  # stopping: give the claimed-ahead jobs back
            prefetched.stop_renewing()
            for job in prefetched.jobs:
                await self.queue.requeue(job.id, self.id)

    async def _claim(self) -> Batch | None:
        """Claim the oldest job and, when its model batches, queued jobs that can share its
        forward pass; start renewing their leases. None if the queue is empty."""
        self._queued.clear()  # an enqueue from now on wakes the idle wait
        try:
            job = await self.queue.claim(self.id, self.settings.lease_seconds, self._engine_jobs)
        except Exception:
            log.exception("claim failed")
            return None
        if job is None:
            return None
        batch = Batch([job])
        batch.renewer = asyncio.create_task(self._renew(batch))
        await self._top_up(batch, wait=True)
        return batch

    async def _top_up(self, batch: Batch, wait: bool = False) -> None:
        """Add queued jobs that can share the batch's forward pass, up to the backend's
        max_batch images. With `wait`, give compatible requests a moment to arrive first.
        Batching is an optimization: if it fails, the batch runs as it is."""
        first = batch.jobs[0]
        if first.kind == MARK_KIND:
            return
        try:
            spec = self.catalog.get(first.model)
            if spec is None or GenerationRequest.model_validate(first.request).batch_key() is None:
                return  # removed model, or it runs alone (input images)
            try:  # made off the loop: the first diffusers backend imports torch
                backend = await asyncio.to_thread(self.backends.get, spec)
            except BackendError:
                return  # the job fails when it runs
            room = backend.max_batch(spec) - sum(job.n for job in batch.jobs)
            if room <= 0:
                return
            if wait and self.settings.batch_wait_seconds > 0:
                await asyncio.sleep(self.settings.batch_wait_seconds)
            jobs = await self.queue.claim_compatible(
                first, self.id, self.settings.lease_seconds, room
            )
        except Exception:
            log.exception("claiming a batch failed", job_id=first.id)
            return
        batch.jobs += jobs  # the batch's renewer picks them up at its next round

    async def process(self, batch: Batch) -> None:
        """Generate on the engine thread, then hand the results to a finishing task so the
        backend can start on the next batch. Owns one finishing slot and releases it."""
        finishing = False
        try:
            if batch.jobs[0].kind == MARK_KIND:
                await self._mark(batch.jobs[0])
                return
            results = await self._generate(batch)
            if results:
                task = asyncio.create_task(self._finish(batch, results))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
                finishing = True
        except Exception:  # never let one job kill the worker
            log.exception("batch crashed", jobs=batch.ids)
            await self._fail_all(batch, "generation_failed", "internal error")
        finally:
            if not finishing:
                batch.stop_renewing()
                self._finish_slots.release()

    async def _fail_all(self, batch: Batch, code: str, message: str) -> None:
        for job in batch.jobs:
            await self.queue.fail(job.id, code, message, self.id)

    async def _generate(self, batch: Batch) -> list[Finished]:
        """Run the backend over the batch; on failure fail (or requeue) its jobs and return
        nothing."""
        first = batch.jobs[0]
        ids = batch.ids
        log_ = log.bind(job_id=first.id, request_id=first.request_id, model=first.model)
        spec = self.catalog.get(first.model)
        if spec is None:
            await self._fail_all(batch, "model_not_found", f"model {first.model} removed")
            return []
        reqs = [GenerationRequest.model_validate(job.request) for job in batch.jobs]
        loop = asyncio.get_running_loop()
        cancelled = self.queue.notifications.is_cancelled
        last_report = [time.monotonic()]

        def on_step(step: int, total: int) -> None:
            if self._abort or all(cancelled(i) or i in batch.lost for i in batch.ids):
                raise JobCancelled
            now = time.monotonic()  # record progress at most twice a second
            if step < total and now - last_report[0] >= PROGRESS_INTERVAL:
                last_report[0] = now
                for job_id in batch.ids:
                    loop.call_soon_threadsafe(self._report_progress, job_id, step / total)

        try:
            results = await loop.run_in_executor(
                self._executor, self._run_backend, reqs, spec, on_step
            )
        except JobCancelled:
            if self._abort:
                for job_id in ids:
                    if await self.queue.requeue(job_id, self.id):
                        log_.info("job requeued at shutdown", job_id=job_id)
            return []
        except BackendError as exc:
            if exc.code == "model_unavailable":
                log_.warning("model unavailable", error=exc.message)
            await self._fail_all(batch, exc.code, exc.message)
            return []
        except Exception as exc:
            log_.exception("generation failed")
            await self._fail_all(batch, "generation_failed", f"{type(exc).__name__}")
            return []
        finally:
            for job_id in ids:
                self.queue.notifications.forget(job_id)
        return [
            Finished(job, req, result)
            for job, req, result in zip(batch.jobs, reqs, results, strict=True)
        ]

    def _run_backend(self, reqs: list[GenerationRequest], spec: ModelSpec, on_step) -> list:
        """On the engine thread: the model's backend (made on first use) over the batch."""
        return self.backends.get(spec).generate_batch(reqs, spec, on_step)

    async def _finish(self, batch: Batch, results: list[Finished]) -> None:
        """Run the post chain over each job's images and store them, then settle the job
        (charging only now). Jobs whose lease was lost are skipped: not ours to settle."""
        loop = asyncio.get_running_loop()
        try:
            for done in results:
                job = done.job
                log_ = log.bind(job_id=job.id, request_id=job.request_id, model=job.model)
                if job.id in batch.lost:
                    log_.info("job dropped from its batch: its lease was lost")
                    continue
                try:
                    stored = await loop.run_in_executor(
                        self._post_executor,
                        store_images,
                        self.storage,
                        self.settings,
                        job.id,
                        done.req,
                        done.result.images,
                        self.tools,
                    )
                    seconds = done.result.inference_seconds
                    kept = len(stored.images)
                    if await settle_or_discard(
                        self.queue, self.storage, job, self.id, stored, seconds
                    ):
                        self.metrics.images_generated.labels(model=job.model).inc(kept)
                        log_.info("job finished", images=kept, seconds=seconds)
                    else:
                        log_.info("job result discarded: job no longer held by this worker")
                except Exception as exc:
                    log_.exception("storing the result failed")
                    await self.queue.fail(job.id, "generation_failed", type(exc).__name__, self.id)
                finally:
                    batch.settled.add(job.id)
        finally:
            batch.stop_renewing()
            self._finish_slots.release()

    async def _mark(self, job: Job) -> None:
        """A mark job (queue/marks.py): copies drawn on the post thread, settled for free."""
        try:
            request = MarkRequest.model_validate(job.request)
            images = await asyncio.get_running_loop().run_in_executor(
                self._post_executor,
                draw_marks,
                self.storage,
                self.settings,
                request,
                self.tools,
            )
        except Exception as exc:  # the originals expired or were deleted, a bad request
            log.warning("mark job failed", job_id=job.id, error=f"{type(exc).__name__}: {exc}")
            await self.queue.fail(job.id, "generation_failed", type(exc).__name__, self.id)
            return
        await settle_or_discard(self.queue, self.storage, job, self.id, Stored(images), 0.0)

    def _preload(self) -> None:
        """Make the backends the catalog needs and let each preload its models, the
        default model first, so the first requests do not pay for it."""
        default = self.catalog.default()
        specs = sorted(self.catalog, key=lambda spec: spec.name != default.name)
        by_kind: dict[str, list[ModelSpec]] = {}
        for spec in specs:
            by_kind.setdefault(backend_kind(spec), []).append(spec)
        for kind, kind_specs in by_kind.items():
            try:
                backend = self.backends.get(kind_specs[0])
            except BackendError as exc:  # reported again, per job, if it persists
                log.warning("backend unavailable", backend=kind, error=exc.message)
                continue
            backend.preload(kind_specs)

    def _report_progress(self, job_id: str, progress: float) -> None:
        task = asyncio.create_task(self.queue.set_progress(job_id, self.id, progress))
        self._finishing.add(task)  # kept referenced, and awaited at shutdown
        task.add_done_callback(self._finishing.discard)

    async def _renew(self, batch: Batch) -> None:
        """Renew the leases of every job of the batch, in one UPDATE a round, until it is
        settled.
        A job whose renewal is refused belongs to someone else now (reaped after a stall):
        it is dropped from the batch, and the generation stops if no job is left."""
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = batch.held()
            if not held:
                return
            ids = [job.id for job in held]
            try:
                renewed = await self.queue.renew_many(ids, self.id, self.settings.lease_seconds)
            except Exception:  # a database hiccup: the leases have two more chances
                log.warning("lease renewal failed", jobs=ids, exc_info=True)
                continue
            for job_id in ids:
                if job_id not in renewed:
                    batch.lost.add(job_id)
                    log.warning("lease lost", job_id=job_id, worker_id=self.id)

    async def stop(self, grace: float) -> None:
        """Stop claiming; let the running job finish within `grace` seconds, else stop it
        at its next step and put it back in the queue."""
        self._stopping = True
        self._queued.set()  # out of the idle wait
        if self._task is None:
            return
        if self.relay is not None:
            await self.relay.stop(grace)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
        except TimeoutError:
            self._abort = True
            await self._task
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self._post_executor.shutdown(wait=True)
        self.backends.close()
        log.info("worker stopped", worker_id=self.id)
