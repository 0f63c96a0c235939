"""The OpenAI-shaped pieces every OpenAI-style response is built from: the images result
(`data[]` for OpenAI, `images[]` for SiliconFlow, timings, seed) and the error object.
Shared by the OpenAI dialects and the task API, so a task's result is exactly what the
synchronous request would have returned.

Reading image files and base64-encoding them takes milliseconds per megabyte: the async
renderers do it on the pixel pool (`processing/offload.py`) so the event loop keeps
serving other requests."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import Request

from pixgate.api.deps import public_base
from pixgate.core.service import GenerationResult, Pixgate
from pixgate.errors import PixgateError
from pixgate.processing.offload import off_loop

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_object(err: PixgateError, lang: str = "en") -> dict[str, Any]:
    """OpenAI's error object: message, type, param, code."""
    return {
        "message": err.message(lang),
        "type": ERROR_TYPES.get(err.status, "server_error"),
        "param": err.param,
        "code": err.code,
    }


def image_urls(app_core: Pixgate, result: GenerationResult, base: str) -> list[str]:
    """Signed, expiring links to the result's images under `base` (the public URL); a
    storage's absolute URL (a presigned S3 URL) is used as it is."""
    urls = (app_core.tasks.image_url(i) for i in result.images)
    return [u if u.startswith(("http://", "https://")) else base + u for u in urls]


def images_base64(app_core: Pixgate, result: GenerationResult) -> list[str]:
    """The result's image files, base64-encoded."""
    return [base64.b64encode(app_core.tasks.image_bytes(i)).decode() for i in result.images]


async def images_base64_async(app_core: Pixgate, result: GenerationResult) -> list[str]:
    """`images_base64` on the pixel pool."""
    return await off_loop(images_base64, app_core, result)


def render_images(app_core: Pixgate, result: GenerationResult, fmt: str, base: str) -> dict:
    """The images response, with links under `base` (the server's public URL)."""
    urls = image_urls(app_core, result, base)
    if fmt == "b64_json":
        data = [{"b64_json": b64} for b64 in images_base64(app_core, result)]
    else:
        data = [{"url": u} for u in urls]
    first = result.images[0] if result.images else None
    if result.rewriter is not None:  # OpenAI's field for the prompt actually used
        for item in data:
            item["revised_prompt"] = result.prompt
    body = {
        "created": int(time.time()),
        "data": data,
        "images": [{"url": u} for u in urls],
        "timings": {"inference": round(result.inference_seconds, 3)},
        "seed": result.seed,
        "output_format": first.format if first else None,
    }
    return body | content_notes(result)


def content_notes(result: GenerationResult) -> dict[str, str]:
    """What the content steps did, for every dialect's response: the rewritten prompt
    and which rewriter made it (`llm` or `offline`), and which upscaler ran."""
    notes = {}
    if result.rewriter is not None:
        notes["revised_prompt"] = result.prompt
        notes["rewriter"] = result.rewriter
    if result.upscaler is not None:
        notes["upscaler"] = result.upscaler
    return notes


async def render_result(
    request: Request, app_core: Pixgate, result: GenerationResult, fmt: str
) -> dict:
    """The images response to `request`; with base64 it is rendered on the pixel pool
    (links only cost a signature each, so they are made here)."""
    base = public_base(request)
    if fmt == "b64_json":
        return await off_loop(render_images, app_core, result, fmt, base)
    return render_images(app_core, result, fmt, base)
