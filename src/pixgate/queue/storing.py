"""What every worker lane does with a job's images once its backend made them: run each
through the post chain and save it, then settle the job (charging only now), or delete the
files when the job is no longer this worker's to settle."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from pixgate.accounts import moderation
from pixgate.accounts.moderation import Refusal
from pixgate.accounts.secrets import server_secret
from pixgate.db import Job
from pixgate.processing.chain import PostTools, run_post
from pixgate.processing.image_moderation import load_classifier
from pixgate.processing.inputs import stored_label
from pixgate.processing.label import label_key
from pixgate.queue.claims import RelayRecord
from pixgate.queue.jobs import JobQueue
from pixgate.settings import Settings
from pixgate.spec.request import GenerationRequest
from pixgate.storage.base import Storage

log = structlog.get_logger("pixgate.queue.worker")

# How a job whose every image the output classifier refused begins its error message (so
# the task APIs report the output image, not the prompt, as what was refused).
IMAGE_REFUSAL = "image moderation refused"


def worker_label_key(settings: Settings) -> bytes | None:
    """The key a worker signs every file's TC260 label with (processing/label.py), from
    the server secret every node shares; None when `aigc_label` is off."""
    if not settings.aigc_label:
        return None
    return label_key(server_secret(settings.data_dir, settings.signing_secret))


def post_tools(settings: Settings, device: str | None = None) -> PostTools:
    """What this worker's post chain needs, loaded once: the label key, the configured
    super-resolution network (on `device`), the output-image classifier and the C2PA
    signer. A configured file that cannot be loaded raises ValueError naming it, so a
    worker does not start half-equipped."""
    tools = PostTools(label_key=worker_label_key(settings))
    if settings.upscaler.model:  # by name: torch is imported only where it is configured
        superres = importlib.import_module("pixgate.processing.superres")
        tools.upscaler = superres.load_upscaler(
            settings.upscaler.model, settings.upscaler.device or device, settings.upscaler.tile
        )
    if settings.image_moderation.configured:
        tools.classifier = load_classifier(settings.image_moderation)
    if settings.c2pa:
        from pixgate.processing.c2pa_sign import load_c2pa_signer

        assert settings.c2pa_cert and settings.c2pa_key  # checked when settings load
        tools.c2pa = load_c2pa_signer(settings.c2pa_cert, settings.c2pa_key)
    return tools


@dataclass
class Stored:
    """A job's images after the post chain: the stored ones (what is charged) and the
    indexes the output-image classifier refused (not stored, not charged)."""

    images: list[dict] = field(default_factory=list)
    refused: list[tuple[int, float]] = field(default_factory=list)  # (index, score)

    def failure(self) -> tuple[str, str] | None:
        """(error code, message) for a job none of whose images may be delivered because
        the classifier refused them; None otherwise."""
        if self.images or not self.refused:
            return None
        return "content_refused", (
            f"{IMAGE_REFUSAL} {len(self.refused)} generated image(s); nothing was charged"
        )


def store_images(
    storage: Storage,
    settings: Settings,
    job_id: str,
    req: GenerationRequest,
    pil_images: list[Any | None],
    tools: PostTools | None = None,
) -> Stored:
    """Run each produced image through the post chain and save it (a worker thread's
    work). An image the backend could not produce (None), that fails to process, or that
    the output-image classifier refuses is left out: it is neither returned nor charged."""
    tools = tools or PostTools()
    origin = stored_label(storage, req.image) if req.image else None
    out = Stored()
    for i, (image, seed) in enumerate(zip(pil_images, req.image_seeds(), strict=True)):
        if image is None:
            continue
        try:
            done = run_post(image, req, settings, tools, f"{job_id}-{i}", origin)
        except (OSError, ValueError):
            log.exception("post-processing an image failed", job_id=job_id, index=i)
            continue
        if done.data is None:
            log.warning(
                "image moderation refused an image",
                job_id=job_id,
                index=i,
                score=round(done.refused_score or 0, 4),
            )
            out.refused.append((i, done.refused_score or 0.0))
            continue
        ext = "jpg" if req.output_format == "jpeg" else req.output_format
        file = storage.save(f"{job_id}-{i}.{ext}", done.data)
        out.images.append(
            {
                "path": file.path,
                "expires": file.expires,
                "seed": seed,
                "format": req.output_format,
                "bytes": len(done.data),
                **done.notes,
            }
        )
    return out


async def settle_or_discard(
    queue: JobQueue,
    storage: Storage,
    job: Job,
    worker_id: str,
    stored: Stored,
    seconds: float,
    relay: RelayRecord | None = None,
) -> bool:
    """Settle the job with its stored images; when it is no longer held by this worker
    (timed out, cancelled, reaped meanwhile) nobody is billed and the files go. Returns
    whether it was settled."""
    outcome = await queue.succeed(job, worker_id, stored.images, seconds, relay, stored.failure())
    if outcome.settled:
        await log_refusals(queue, job, stored)
        return True
    for image in stored.images:
        storage.delete(image["path"])
    return False


async def log_refusals(queue: JobQueue, job: Job, stored: Stored) -> None:
    """One moderation-log entry per image the classifier refused (for the admin)."""
    dialect = (job.request or {}).get("dialect") or "api"
    for index, score in stored.refused:
        refusal = Refusal(
            job.key_id, job.user_id, dialect, f"output_image[{index}]", None, score, job.id
        )
        try:
            await moderation.record(queue.db, refusal)
        except Exception:
            log.exception("could not log an image refusal", job_id=job.id)
