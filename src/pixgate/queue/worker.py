"""The worker: claims jobs, runs the engine on its own thread (never the event loop),
stores the images and settles the job.

It runs inside `pixgate serve` (embedded) or alone as `pixgate worker` on a GPU machine
pointed at the same database (scaled).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from pixgate.db import Job
from pixgate.metrics import Metrics
from pixgate.processing import postprocess
from pixgate.processing.encode import encode_image
from pixgate.queue.jobs import JobQueue
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog
from pixgate.spec.request import GenerationRequest
from pixgate.storage.local import LocalStorage

if TYPE_CHECKING:
    from pixgate.backends.diffusers.engine import DiffusersEngine, EngineResult

log = structlog.get_logger("pixgate.queue.worker")


PROGRESS_INTERVAL = 0.5  # seconds between progress writes for one job


class JobCancelled(Exception):
    """Raised from the step callback to stop a generation early."""


@dataclass
class Claimed:
    job: Job
    renewer: asyncio.Task  # keeps the job's lease alive while we hold it


Batch = list[Claimed]  # jobs that share one forward pass; usually one


@dataclass
class Finished:
    claimed: Claimed
    req: GenerationRequest
    result: EngineResult


def make_engine(settings: Settings, storage: LocalStorage | None = None) -> DiffusersEngine:
    """Import the engine lazily: only workers pay for torch and diffusers."""
    from pixgate.backends.diffusers.engine import DiffusersEngine
    from pixgate.backends.diffusers.loader import PipelineCache

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from pixgate.processing.inputs import open_input

    cache = PipelineCache(
        settings.models_dir,
        settings.max_loaded_pipelines,
        settings.ram_budget_gb,
        settings.vram_budget_gb,
    )
    return DiffusersEngine(
        cache,
        (lambda path: open_input(storage, path)) if storage else None,
        {lora.name: lora for lora in settings.loras},
    )


class Worker:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        queue: JobQueue,
        storage: LocalStorage,
        metrics: Metrics,
        engine: DiffusersEngine | None = None,
    ):
        self.settings = settings
        self.catalog = catalog
        self.queue = queue
        self.storage = storage
        self.metrics = metrics
        self.engine = engine
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixgate-engine")
        self._post_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixgate-post")
        self._finish_slots = asyncio.Semaphore(2)
        self._finishing: set[asyncio.Task] = set()
        self._stopping = False
        self._abort = False
        self._task: asyncio.Task | None = None
        self.ready = False  # engine made and models preloaded

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="pixgate-worker")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.engine is None:
            self.engine = await loop.run_in_executor(
                self._executor, make_engine, self.settings, self.storage
            )
        if self.settings.preload:
            await loop.run_in_executor(self._executor, self._preload)
        self.ready = True
        log.info("worker started", worker_id=self.id)
        prefetched: Batch | None = None
        while not self._stopping:
            # At most one batch finishing (encode, store, settle) while the next generates.
            await self._finish_slots.acquire()
            if prefetched is not None:  # claimed a while ago: jobs may have queued since
                await self._top_up(prefetched)
            claimed = prefetched or await self._claim()
            prefetched = None
            if claimed is None:
                self._finish_slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.queue.wakeup.wait(), timeout=self.settings.worker_poll_seconds
                    )
                continue
            if len(claimed) > 1:
                self.metrics.batch_size.observe(sum(item.job.n for item in claimed))
            generation = asyncio.create_task(self.process(claimed))
            if self.settings.worker_prefetch and not self._stopping:
                # Claim the next job while the engine works, so it starts without a gap.
                prefetched = await self._claim()
            await generation
        if prefetched is not None:  # stopping: give the claimed-ahead jobs back
            for item in prefetched:
                item.renewer.cancel()
                await self.queue.requeue(item.job.id, self.id)

    async def _claim(self) -> Batch | None:
        """Claim the oldest job and, when its model batches, queued jobs that can share its
        forward pass; start renewing their leases. None if the queue is empty."""
        self.queue.wakeup.clear()  # an enqueue from now on wakes the idle wait
        try:
            job = await self.queue.claim(self.id, self.settings.lease_seconds)
        except Exception:
            log.exception("claim failed")
            return None
        if job is None:
            return None
        batch = [Claimed(job, asyncio.create_task(self._renew(job.id)))]
        await self._top_up(batch, wait=True)
        return batch

    async def _top_up(self, batch: Batch, wait: bool = False) -> None:
        """Add queued jobs that can share the batch's forward pass, up to the model's
        max_batch images. With `wait`, give compatible requests a moment to arrive first.
        Batching is an optimization: if it fails, the batch runs as it is."""
        first = batch[0].job
        try:
            spec = self.catalog.get(first.model)
            if spec is None or self.engine is None:
                return
            if GenerationRequest.model_validate(first.request).batch_key() is None:
                return  # runs alone (input images)
            room = self.engine.max_batch(spec) - sum(item.job.n for item in batch)
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
        batch += [Claimed(j, asyncio.create_task(self._renew(j.id))) for j in jobs]

    async def process(self, batch: Batch) -> None:
        """Generate on the engine thread, then hand the results to a finishing task so the
        engine can start on the next batch. Owns one finishing slot and releases it."""
        finishing = False
        try:
            results = await self._generate(batch)
            if results:
                task = asyncio.create_task(self._finish(results))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
                finishing = True
        except Exception:  # never let one job kill the worker
            log.exception("batch crashed", jobs=[item.job.id for item in batch])
            await self._fail_all(batch, "generation_failed", "internal error")
        finally:
            if not finishing:
                for item in batch:
                    item.renewer.cancel()
                self._finish_slots.release()

    async def _fail_all(self, batch: Batch, code: str, message: str) -> None:
        for item in batch:
            await self.queue.fail(item.job.id, code, message, self.id)

    async def _generate(self, batch: Batch) -> list[Finished]:
        """Run the engine over the batch; on failure fail (or requeue) its jobs and return
        nothing."""
        from pixgate.backends.diffusers.engine import SamplerError
        from pixgate.backends.diffusers.loader import ModelLoadError
        from pixgate.backends.diffusers.lora import LoraError

        first = batch[0].job
        ids = [item.job.id for item in batch]
        log_ = log.bind(job_id=first.id, request_id=first.request_id, model=first.model)
        spec = self.catalog.get(first.model)
        if spec is None:
            await self._fail_all(batch, "model_not_found", f"model {first.model} removed")
            return []
        reqs = [GenerationRequest.model_validate(item.job.request) for item in batch]
        loop = asyncio.get_running_loop()

        last_report = [time.monotonic()]

        def on_step(step: int, total: int) -> None:
            cancelled = self.queue.cancelled
            if self._abort or all(job_id in cancelled for job_id in ids):
                raise JobCancelled
            now = time.monotonic()  # record progress at most twice a second
            if step < total and now - last_report[0] >= PROGRESS_INTERVAL:
                last_report[0] = now
                for job_id in ids:
                    loop.call_soon_threadsafe(self._report_progress, job_id, step / total)

        try:
            results = await loop.run_in_executor(
                self._executor, self.engine.generate_batch, reqs, spec, on_step
            )
        except JobCancelled:
            if self._abort:
                for job_id in ids:
                    if await self.queue.requeue(job_id, self.id):
                        log_.info("job requeued at shutdown", job_id=job_id)
            return []
        except ModelLoadError as exc:
            log_.warning("model unavailable", error=str(exc))
            await self._fail_all(batch, "model_unavailable", str(exc))
            return []
        except SamplerError as exc:
            await self._fail_all(batch, "invalid_sampler", str(exc))
            return []
        except LoraError as exc:
            await self._fail_all(batch, "invalid_lora", str(exc))
            return []
        except Exception as exc:
            log_.exception("generation failed")
            await self._fail_all(batch, "generation_failed", f"{type(exc).__name__}")
            return []
        finally:
            for job_id in ids:
                self.queue.cancelled.discard(job_id)
        return [
            Finished(item, req, result)
            for item, req, result in zip(batch, reqs, results, strict=True)
        ]

    async def _finish(self, results: list[Finished]) -> None:
        """Encode and store each job's images, then settle it (charging only now)."""
        loop = asyncio.get_running_loop()
        try:
            for done in results:
                job = done.claimed.job
                log_ = log.bind(job_id=job.id, request_id=job.request_id, model=job.model)
                try:
                    images = await loop.run_in_executor(
                        self._post_executor, self._store, job.id, done.req, done.result.images
                    )
                    seconds = done.result.inference_seconds
                    outcome = await self.queue.succeed(job, self.id, images, seconds)
                    if outcome.settled:
                        self.metrics.images_generated.labels(model=job.model).inc(len(images))
                        log_.info("job succeeded", images=len(images), seconds=seconds)
                    else:  # timed out, cancelled or reaped meanwhile: nobody is billed
                        for image in images:
                            (self.storage.root / image["path"]).unlink(missing_ok=True)
                        log_.info("job result discarded: job no longer held by this worker")
                except Exception as exc:
                    log_.exception("storing the result failed")
                    await self.queue.fail(job.id, "generation_failed", type(exc).__name__, self.id)
                finally:
                    done.claimed.renewer.cancel()
        finally:
            self._finish_slots.release()

    def _preload(self) -> None:
        """Build every builtin model to disk up front, and load the default model and the
        next ones (each source once) while they fit in the pipeline cache, so the first
        requests do not pay for it."""
        from pixgate.backends.diffusers.builtin import BUILTIN_PREFIX, ensure_builtin

        default = self.catalog.default()
        specs = sorted(self.catalog, key=lambda spec: spec.name != default.name)
        builtins = [spec for spec in specs if spec.source_kind == "builtin"]
        loaded: set[str] = set()
        for spec in builtins:
            try:
                ensure_builtin(spec.source[len(BUILTIN_PREFIX) :], self.settings.models_dir)
                if spec.source not in loaded and len(loaded) < self.engine.cache.max_loaded:
                    self.engine.cache.get(spec)
                    loaded.add(spec.source)
            except Exception as exc:  # reported again, per job, if it persists
                log.warning("preload failed", model=spec.name, error=str(exc))

    def _store(
        self, job_id: str, req: GenerationRequest, pil_images: list[Any | None]
    ) -> list[dict]:
        """Encode and save each produced image. An image the engine could not produce
        (None) or that fails to encode is left out: it is neither returned nor charged."""
        stored = []
        for i, (image, seed) in enumerate(zip(pil_images, req.image_seeds(), strict=True)):
            if image is None:
                continue
            try:
                image = postprocess.apply(image, req)
                data = encode_image(
                    image,
                    req.output_format,
                    self.settings.png_compress_level,
                    req.output_compression,
                )
            except (OSError, ValueError):
                log.exception("encoding an image failed", job_id=job_id, index=i)
                continue
            ext = "jpg" if req.output_format == "jpeg" else req.output_format
            file = self.storage.save(f"{job_id}-{i}.{ext}", data)
            stored.append(
                {
                    "path": file.path,
                    "expires": file.expires,
                    "seed": seed,
                    "format": req.output_format,
                    "bytes": len(data),
                }
            )
        return stored

    def _report_progress(self, job_id: str, progress: float) -> None:
        task = asyncio.create_task(self.queue.set_progress(job_id, self.id, progress))
        self._finishing.add(task)  # kept referenced, and awaited at shutdown
        task.add_done_callback(self._finishing.discard)

    async def _renew(self, job_id: str) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if not await self.queue.renew(job_id, self.id, self.settings.lease_seconds):
                self.queue.cancelled.add(job_id)  # someone else owns it now: stop early
                return

    async def stop(self, grace: float) -> None:
        """Stop claiming; let the running job finish within `grace` seconds, else stop it
        at its next step and put it back in the queue."""
        self._stopping = True
        self.queue.wakeup.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
        except TimeoutError:
            self._abort = True
            await self._task
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self._post_executor.shutdown(wait=True)
        log.info("worker stopped", worker_id=self.id)
