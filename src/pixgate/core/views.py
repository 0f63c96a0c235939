"""What the core hands dialects and routers: plain frozen dataclasses, never ORM rows.

A view is read once, inside the core, from the row it describes; a dialect can render it
after the database session is gone, cannot write it back by accident, and does not break
when a column is renamed, because only this module knows the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pixgate.db import Job, LedgerEntry, WebhookAttempt
from pixgate.spec.request import GenerationRequest


@dataclass(frozen=True)
class GeneratedImage:
    path: str
    expires: int
    seed: int
    format: str


@dataclass(frozen=True)
class GenerationResult:
    job_id: str
    seed: int
    inference_seconds: float
    images: list[GeneratedImage]
    prompt: str = ""  # the prompt generated from (after rewriting, when asked for)
    original_prompt: str | None = None  # the client's, when `prompt` is a rewrite of it
    rewriter: str | None = None  # llm | offline: what rewrote it
    upscaler: str | None = None  # what upscaled the images (lanczos, or the SR network)


@dataclass(frozen=True)
class WebhookView:
    """A task's webhook and where its delivery stands."""

    url: str
    status: str | None  # pending | delivered | failed
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None  # only while a delivery is pending


@dataclass(frozen=True)
class DeliveryView:
    """One delivery attempt of a task's webhook."""

    attempt: int
    status_code: int | None
    error: str | None  # None: delivered
    duration_ms: int
    created_at: datetime

    @property
    def delivered(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class TaskView:
    """A job as every task API reports it: status, progress, timings, cost, its error
    and, once it succeeded, its images."""

    id: str
    user_id: str | None
    key_id: str | None
    request_id: str | None
    model: str
    kind: str
    status: str  # as stored: queued | running | succeeded | failed
    task_status: str  # what task APIs say: failed by its owner reads `cancelled`
    progress: float  # 0-1
    n: int
    n_succeeded: int
    seed: int
    cost_minor: int
    inference_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_code: str | None
    error_message: str | None
    images: list[GeneratedImage]
    prompt: str
    output_size: tuple[int, int]  # width, height of the images it makes
    response_format: str | None  # what an asynchronous client asked for
    base_url: str | None  # where that client sent the request (links in webhooks)
    webhook: WebhookView | None
    channel: str | None = None  # relayed jobs: the channel whose images were kept
    upstream_cost_minor: int = 0  # what that channel charged for them
    original_prompt: str | None = None  # the client's prompt, when `prompt` rewrote it
    rewriter: str | None = None  # llm | offline
    upscaler: str | None = None  # lanczos or the SR network's architecture
    # A queued job no live worker can run: why (`no live worker serves model X`).
    waiting: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    def result(self) -> GenerationResult:
        """A succeeded task's images, as the synchronous path returns them."""
        return GenerationResult(
            self.id,
            self.seed,
            self.inference_seconds or 0.0,
            list(self.images),
            self.prompt,
            self.original_prompt,
            self.rewriter,
            self.upscaler,
        )


@dataclass(frozen=True)
class LedgerView:
    id: int
    user_id: str
    kind: str
    amount_minor: int
    job_id: str | None
    key_id: str | None
    reason: str | None
    actor: str | None
    created_at: datetime


def task_view(job: Job) -> TaskView:
    """The view of a job row (read inside the session that loaded it, or after: every
    column is loaded eagerly)."""
    request: dict[str, Any] = job.request or {}
    options = job.task_options or {}
    return TaskView(
        id=job.id,
        user_id=job.user_id,
        key_id=job.key_id,
        request_id=job.request_id,
        model=job.model,
        kind=job.kind,
        status=job.status,
        task_status=job.task_status,
        progress=job.progress or 0.0,
        n=job.n,
        n_succeeded=job.n_succeeded,
        seed=job.seed,
        cost_minor=job.cost_minor,
        inference_seconds=job.inference_seconds,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error_code=job.error_code,
        error_message=job.error_message,
        images=[
            GeneratedImage(path=i["path"], expires=i["expires"], seed=i["seed"], format=i["format"])
            for i in job.images or []
        ],
        prompt=request.get("prompt", ""),
        output_size=_output_size(request),
        response_format=options.get("response_format"),
        base_url=options.get("base_url"),
        webhook=_webhook_view(job),
        channel=job.channel,
        upstream_cost_minor=job.upstream_cost_minor or 0,
        original_prompt=request.get("original_prompt"),
        rewriter=request.get("rewriter"),
        upscaler=next((i["upscaler"] for i in job.images or [] if "upscaler" in i), None),
    )


def _output_size(request: dict[str, Any]) -> tuple[int, int]:
    try:
        return GenerationRequest.model_validate(request).output_size
    except ValueError:  # a row written by a newer node that this one cannot read
        return int(request.get("width") or 0), int(request.get("height") or 0)


def _webhook_view(job: Job) -> WebhookView | None:
    if job.webhook_url is None:
        return None
    pending = job.webhook_status == "pending"
    return WebhookView(
        url=job.webhook_url,
        status=job.webhook_status,
        attempts=job.webhook_attempts,
        last_error=job.webhook_last_error,
        next_attempt_at=job.webhook_next_at if pending else None,
    )


def delivery_view(row: WebhookAttempt) -> DeliveryView:
    return DeliveryView(row.attempt, row.status_code, row.error, row.duration_ms, row.created_at)


def ledger_view(row: LedgerEntry) -> LedgerView:
    return LedgerView(
        row.id,
        row.user_id,
        row.kind,
        row.amount_minor,
        row.job_id,
        row.key_id,
        row.reason,
        row.actor,
        row.created_at,
    )
