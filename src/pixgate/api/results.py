"""The OpenAI-shaped pieces every OpenAI-style response is built from: the images result
(`data[]` for OpenAI, `images[]` for SiliconFlow, timings, seed) and the error object.
Shared by the OpenAI dialects and the task API, so a task's result is exactly what the
synchronous request would have returned."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import Request

from pixgate.api.deps import public_base
from pixgate.core.service import GenerationResult, Pixgate
from pixgate.errors import PixgateError

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
    """Signed, expiring links to the result's images under `base` (the public URL)."""
    return [base + app_core.storage.signed_path(i.path, i.expires) for i in result.images]


def images_base64(app_core: Pixgate, result: GenerationResult) -> list[str]:
    """The result's image files, base64-encoded."""
    return [base64.b64encode(app_core.storage.read(i.path)).decode() for i in result.images]


def render_images(app_core: Pixgate, result: GenerationResult, fmt: str, base: str) -> dict:
    """The images response, with links under `base` (the server's public URL)."""
    urls = image_urls(app_core, result, base)
    if fmt == "b64_json":
        data = [{"b64_json": b64} for b64 in images_base64(app_core, result)]
    else:
        data = [{"url": u} for u in urls]
    first = result.images[0] if result.images else None
    return {
        "created": int(time.time()),
        "data": data,
        "images": [{"url": u} for u in urls],
        "timings": {"inference": round(result.inference_seconds, 3)},
        "seed": result.seed,
        "output_format": first.format if first else None,
    }


def render_result(request: Request, app_core: Pixgate, result: GenerationResult, fmt: str) -> dict:
    """The images response to `request`."""
    return render_images(app_core, result, fmt, public_base(request))
