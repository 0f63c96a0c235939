"""Volcengine Ark's Seedream images API, as a channel: `POST {base_url}/api/v3/images/
generations` with `Authorization: Bearer`, JSON {model, prompt, size "WxH", seed,
guidance_scale, response_format "b64_json", watermark false (pixgate labels images itself),
image (img2img: a `data:image/png;base64,...` URI)}. `base_url` is the host
(`https://ark.cn-beijing.volces.com`).

One image per call (n images are n calls at once, image i with seed + i). The answer is
`data[i].b64_json` or `data[i].url`; errors are `{"error": {"code", "message"}}`, where a
code naming sensitive content (`InputTextSensitiveContentDetected`,
`OutputImageSensitiveContentDetected`, ...) is a content refusal and the HTTP status decides
the rest (429 rate limits, 401/403 keys and overdue accounts, 5xx).
"""

from __future__ import annotations

from typing import Any

import httpx

from pixgate.backends.relay.apis.base import (
    Call,
    UpstreamFailure,
    UpstreamImage,
    bearer,
    data_uri,
    error_code,
    input_image,
    json_body,
    listed_images,
    one_per_call,
    require_kind,
    send,
    size,
    upstream_message,
    without_defaults,
)

GENERATIONS = "/api/v3/images/generations"


def _refine(response: httpx.Response) -> UpstreamFailure | None:
    code = error_code(response)
    if isinstance(code, str) and "sensitive" in code.lower():
        message = f"HTTP {response.status_code} {code}: {upstream_message(response)}"
        return UpstreamFailure("content", message, response.status_code)
    return None


def payload(call: Call, seed: int, image: str | None) -> dict[str, Any]:
    req = call.req
    body: dict[str, Any] = {
        "model": call.upstream_model,
        "prompt": req.prompt,
        "size": size(call),
        "seed": seed,
        "guidance_scale": req.guidance,
        "response_format": "b64_json",
        "watermark": False,
    }
    if image is not None:
        body["image"] = image
    return without_defaults(body, req, {"guidance": "guidance_scale"})


async def generate(call: Call) -> list[UpstreamImage]:
    require_kind(call)
    image = data_uri(input_image(call)) if call.req.kind == "img2img" else None

    async def one(seed: int) -> list[UpstreamImage]:
        response = await send(
            call,
            "POST",
            GENERATIONS,
            json=payload(call, seed, image),
            headers=bearer(call),
            refine=_refine,
        )
        body = json_body(response)
        return listed_images(body, "data")[:1]

    return await one_per_call(call, one)
