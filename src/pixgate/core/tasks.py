"""Jobs as their owners see them: waiting for a result (the synchronous path), reading,
listing and cancelling tasks, the error a failed job is reported as, and the images of a
result (links, bytes, marked copies)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pixgate.accounts.keys import Caller
from pixgate.core.admission import AdmissionDesk
from pixgate.core.views import (
    DeliveryView,
    GeneratedImage,
    GenerationResult,
    TaskView,
    delivery_view,
    task_view,
)
from pixgate.db import Database, Job
from pixgate.errors import PixgateError
from pixgate.metrics import Metrics
from pixgate.queue import marks, queries, registry, webhooks
from pixgate.queue.jobs import JobQueue
from pixgate.queue.storing import IMAGE_REFUSAL
from pixgate.settings import Settings
from pixgate.spec.request import GenerationRequest, Watermark
from pixgate.storage import Storage

# job error codes of relayed jobs that are client-facing errors of the same name
RELAY_ERRORS = ("upstream_error", "upstream_timeout", "no_channel", "upstream_rejected")


class Tasks:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        queue: JobQueue,
        storage: Storage,
        metrics: Metrics,
        admission: AdmissionDesk,
        worker_here: Callable[[], bool],
    ):
        self._settings = settings
        self._db = db
        self._queue = queue
        self._storage = storage
        self._metrics = metrics
        self._admission = admission
        self._worker_here = worker_here  # a worker runs in this process (hand-over, no poll)

    # --- the synchronous path ------------------------------------------------------------
    async def _wait_or_time_out(self, job_id: str) -> Job:
        """The job once finished, or failed as `generation_timeout` (reservation released,
        a local worker told to stop) when it is still queued or running after
        `generation_timeout_seconds`."""
        timeout = self._settings.generation_timeout_seconds
        # With a worker in this process, the finish arrives as a notification; polling is
        # only for workers elsewhere, so it can start slow.
        here = self._worker_here()
        job = await self._queue.wait(
            job_id,
            timeout,
            max_poll=self._settings.worker_poll_seconds * 2,
            first_poll=0.5 if here else 0.05,
            look_first=not here,
        )
        if job is not None and not job.finished:
            await self._queue.fail(
                job_id,
                "generation_timeout",
                f"exceeded {timeout:g} s",
                statuses=("queued", "running"),
            )
            job = await self._queue.get(job_id)
        assert job is not None
        return job

    async def wait_result(self, job_id: str, request_id: str | None = None) -> GenerationResult:
        """Wait for a submitted job (failing it after the generation timeout) and return
        its images, or raise the PixgateError its failure maps to."""
        job = await self._wait_or_time_out(job_id)
        self._metrics.jobs_finished.labels(model=job.model, status=job.status).inc()
        view = task_view(job)
        if view.status != "succeeded":
            raise self.job_error(view, request_id)
        return view.result()

    async def generate(
        self, caller: Caller, req: GenerationRequest, request_id: str | None = None
    ) -> GenerationResult:
        """Submit and wait: the synchronous path of every dialect."""
        job_id = await self._admission.submit(caller, req, request_id)
        return await self.wait_result(job_id, request_id)

    # --- tasks ---------------------------------------------------------------------------
    async def task(self, caller: Caller, job_id: str) -> TaskView:
        """A job of the caller's account (asynchronous task APIs); 404 for anyone else's,
        so task ids cannot be probed."""
        job = await self._queue.get(job_id)
        if job is None or job.user_id != caller.user.id:
            raise PixgateError("job_not_found", args_={"job": job_id})
        return (await self._with_waiting([task_view(job)]))[0]

    async def _with_waiting(self, views: list[TaskView]) -> list[TaskView]:
        """The views, each queued one saying why it waits when no live worker serves its
        model (the workers' heartbeats are read once, and only if one is queued)."""
        queued = [i for i, v in enumerate(views) if v.status == "queued"]
        if not queued:
            return views
        reasons = await registry.waiting_reasons(
            self._db,
            [(views[i].model, views[i].kind) for i in queued],
            self._settings.worker_heartbeat_seconds,
        )
        views = list(views)
        for i, reason in zip(queued, reasons, strict=True):
            if reason is not None:
                views[i] = dataclasses.replace(views[i], waiting=f"waiting: {reason}")
        return views

    async def cancel_task(self, caller: Caller, job_id: str) -> TaskView:
        """Cancel a queued or running job of the caller's account and refund it."""
        await self.task(caller, job_id)
        if not (await self._queue.cancel(job_id, caller.user.id)).settled:
            job = await self.task(caller, job_id)
            raise PixgateError("job_finished", args_={"job": job_id, "status": job.task_status})
        return await self.task(caller, job_id)

    async def list_tasks(
        self, caller: Caller, task_status: str | None, limit: int
    ) -> list[TaskView]:
        """The caller's tasks newest first, optionally of one task status (`cancelled` is
        stored as failed with error code `cancelled`)."""
        stored, cancelled = {
            "failed": ("failed", False),
            "cancelled": ("failed", True),
        }.get(task_status or "", (task_status, None))
        rows = await queries.recent_jobs(
            self._db, caller.user.id, stored, limit, cancelled=cancelled
        )
        return await self._with_waiting([task_view(j) for j in rows])

    async def deliveries(self, caller: Caller, job_id: str) -> list[DeliveryView]:
        """A task's webhook delivery attempts, oldest first (404 unless the caller's)."""
        await self.task(caller, job_id)
        return [delivery_view(a) for a in await webhooks.attempts(self._db, job_id)]

    def job_error(self, job: TaskView, request_id: str | None = None) -> PixgateError:
        """The PixgateError a failed, cancelled or timed-out job is reported as."""
        code = job.error_code or "generation_failed"
        if code == "generation_timeout":
            timeout = f"{self._settings.generation_timeout_seconds:g}"
            return PixgateError(code, args_={"timeout": timeout})
        if code in ("invalid_sampler", "invalid_lora"):  # found once the model is loaded
            detail = job.error_message or ""
            return PixgateError(
                "invalid_value",
                param=code.removeprefix("invalid_"),
                args_={"detail": detail, "detail_zh": detail},
            )
        if code in ("model_unavailable", "model_not_found"):
            return PixgateError(
                "model_unavailable",
                param="model",
                args_={
                    "model": job.model,
                    "detail": job.error_message or "",
                    "detail_zh": job.error_message or "",
                },
                headers={"Retry-After": "30"},
            )
        if code == "cancelled":
            return PixgateError("job_finished", args_={"job": job.id, "status": "cancelled"})
        if code in RELAY_ERRORS:
            args = {"model": job.model, "detail": job.error_message or ""}
            headers = {"Retry-After": "5"} if code == "no_channel" else {}
            return PixgateError(code, param="model", args_=args, headers=headers)
        if code == "content_refused":  # image moderation, or an upstream, refused it
            output = (job.error_message or "").startswith(IMAGE_REFUSAL)
            return PixgateError(code, param="output_image" if output else "prompt")
        return PixgateError("generation_failed", args_={"request_id": request_id or job.id})

    # --- a result's images ---------------------------------------------------------------
    def image_url(self, image: GeneratedImage) -> str:
        """The image's signed, expiring URL path; the caller puts the public base in front."""
        return self._storage.url(image.path, image.expires)

    def image_bytes(self, image: GeneratedImage) -> bytes:
        """The image file (FileNotFoundError once it was swept)."""
        return self._storage.read(image.path)

    def url_ttl_seconds(self) -> int:
        """How long image links last (what an expired-link error tells the client)."""
        return self._settings.url_ttl_seconds

    async def marked_copy(
        self, caller: Caller, result: GenerationResult, mark: Watermark
    ) -> GenerationResult:
        """A finished job's images with a visible mark drawn on copies, for APIs that
        choose the mark when fetching a result (Volcengine's CVSync2AsyncGetResult). A
        worker draws them (a free `mark` job, queue/marks.py): API nodes never decode or
        encode images. The originals stay as they are; copies keep their expiry. Nothing
        is charged."""
        await self._admission.moderate_text(caller, "watermark", mark.text)
        source = await self._queue.get(result.job_id)
        model = source.model if source is not None else ""
        job_id = await marks.enqueue_mark(
            self._queue, result.job_id, model, result.seed, result.images, mark
        )
        job = await self._wait_or_time_out(job_id)
        if job.status != "succeeded":
            if job.error_code == "generation_timeout":
                timeout = f"{self._settings.generation_timeout_seconds:g}"
                raise PixgateError("generation_timeout", args_={"timeout": timeout})
            raise PixgateError("generation_failed", args_={"request_id": result.job_id})
        images = [
            GeneratedImage(i["path"], i["expires"], i["seed"], i["format"]) for i in job.images
        ]
        return dataclasses.replace(result, images=images)
