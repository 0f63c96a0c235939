"""What every worker lane does with a job's images once its backend made them: run each
through the post chain and save it, then settle the job (charging only now), or delete the
files when the job is no longer this worker's to settle."""

from __future__ import annotations

from typing import Any

import structlog

from pixgate.accounts.secrets import server_secret
from pixgate.db import Job
from pixgate.processing.chain import LabelContext, run_post
from pixgate.processing.label import label_key
from pixgate.queue.claims import RelayRecord
from pixgate.queue.jobs import JobQueue
from pixgate.settings import Settings
from pixgate.spec.request import GenerationRequest
from pixgate.storage.base import Storage

log = structlog.get_logger("pixgate.queue.worker")


def worker_label_key(settings: Settings) -> bytes | None:
    """The key a worker signs every file's TC260 label with (processing/label.py), from
    the server secret every node shares; None when `aigc_label` is off."""
    if not settings.aigc_label:
        return None
    return label_key(server_secret(settings.data_dir, settings.signing_secret))


def store_images(
    storage: Storage,
    settings: Settings,
    job_id: str,
    req: GenerationRequest,
    pil_images: list[Any | None],
    label_key: bytes | None = None,
) -> list[dict]:
    """Run each produced image through the post chain and save it (a worker thread's
    work). An image the backend could not produce (None) or that fails to process is left
    out: it is neither returned nor charged."""
    stored = []
    for i, (image, seed) in enumerate(zip(pil_images, req.image_seeds(), strict=True)):
        if image is None:
            continue
        try:
            label = LabelContext(label_key, f"{job_id}-{i}") if label_key else None
            data = run_post(image, req, settings, label=label)
        except (OSError, ValueError):
            log.exception("post-processing an image failed", job_id=job_id, index=i)
            continue
        ext = "jpg" if req.output_format == "jpeg" else req.output_format
        file = storage.save(f"{job_id}-{i}.{ext}", data)
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


async def settle_or_discard(
    queue: JobQueue,
    storage: Storage,
    job: Job,
    worker_id: str,
    images: list[dict],
    seconds: float,
    relay: RelayRecord | None = None,
) -> bool:
    """Settle the job with its stored images; when it is no longer held by this worker
    (timed out, cancelled, reaped meanwhile) nobody is billed and the files go. Returns
    whether it was settled."""
    if (await queue.succeed(job, worker_id, images, seconds, relay)).settled:
        return True
    for image in images:
        storage.delete(image["path"])
    return False
