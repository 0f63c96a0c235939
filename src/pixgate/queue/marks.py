"""Mark jobs: a visible mark drawn on copies of a finished job's images, by a worker.

Volcengine's CVSync2AsyncGetResult chooses its `logo_info` when the client fetches the
result, after the images were made. Post-processing runs in workers only (API nodes stay
free of image work and never re-encode a file), so the API node queues a `mark` job and
waits for it like for any job: same claim, lease, notifications and timeout. The job is
free: it has no key and no price, so nothing is reserved, charged or counted as usage,
and it is not one of the account's tasks. The originals stay as they are; the copies keep
the originals' expiry.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from pixgate.processing.chain import PostTools, remark
from pixgate.queue.claims import MARK_KIND  # the job's `kind`: never batched with generations
from pixgate.spec.request import Watermark

if TYPE_CHECKING:
    from pixgate.queue.jobs import JobQueue
    from pixgate.settings import Settings


class MarkedImage(BaseModel):
    """An image to copy (as stored on the job it came from), and then the copy."""

    model_config = ConfigDict(extra="ignore")

    path: str
    expires: int
    seed: int
    format: str


class MarkRequest(BaseModel):
    """A mark job's `request`."""

    model_config = ConfigDict(extra="ignore")  # rolling upgrades: newer nodes may add fields

    source_job: str
    watermark: Watermark
    images: list[MarkedImage] = Field(min_length=1)


async def enqueue_mark(
    queue: JobQueue, source_job: str, model: str, seed: int, images: list[Any], mark: Watermark
) -> str:
    """Queue a free mark job for `images` (anything with path/expires/seed/format) of
    `source_job`; returns its id. Wait for it with `queue.wait`."""
    request = MarkRequest(
        source_job=source_job,
        watermark=mark,
        images=[
            MarkedImage(path=i.path, expires=i.expires, seed=i.seed, format=i.format)
            for i in images
        ],
    )
    return await queue.enqueue_unbilled(
        MARK_KIND, model, request.model_dump(mode="json"), len(images), seed
    )


def draw_marks(
    storage: Any, settings: Settings, request: MarkRequest, tools: PostTools | None = None
) -> list[dict[str, Any]]:
    """The worker's half (on its post-processing thread): each image read from storage,
    marked and encoded again in its format, saved as a copy named after the original and
    the mark, so fetching the same mark again makes the same file."""
    mark = request.watermark
    tag = hashlib.sha256(mark.model_dump_json().encode()).hexdigest()[:12]
    copies = []
    for image in request.images:
        name = PurePosixPath(image.path)
        data = remark(
            storage.read(image.path),
            image.format,
            mark,
            settings,
            tools or PostTools(),
            f"{name.stem}-mark-{tag}",
        )
        stored = storage.save(f"{name.stem}-mark-{tag}{name.suffix}", data)
        copies.append(
            {
                "path": stored.path,
                "expires": image.expires,
                "seed": image.seed,
                "format": image.format,
                "bytes": len(data),
            }
        )
    return copies
