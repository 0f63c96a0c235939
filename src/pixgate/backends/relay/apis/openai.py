"""The OpenAI images API, as a channel: `POST /images/generations` (JSON) for text-to-image,
`POST /images/edits` (multipart: image, optional mask) for img2img and inpainting, and
`POST /images/variations` (multipart: image) for variations, with `Authorization: Bearer`.
`base_url` ends where the paths start (`https://api.openai.com/v1`); another pixgate's
OpenAI dialect is reached the same way (`https://pixgate.example/v1`).

Only what OpenAI's API has is sent (model, prompt, n, size, response_format): the API
refuses parameters it does not know, so seeds, steps and the like cannot travel (TYPE_INFO
lists no optional fields). The answer is `data[i].b64_json` or `data[i].url`.

OpenAI's masks are the other way round from pixgate's: an RGBA PNG whose fully transparent
pixels are the area to repaint. The mask sent is the input image with the alpha channel
cut out where pixgate's mask is white.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
from PIL import Image

from pixgate.backends.relay.apis.base import (
    Call,
    UpstreamFailure,
    UpstreamImage,
    bearer,
    error_code,
    input_image,
    json_body,
    listed_images,
    require_kind,
    send,
    size,
    upstream_message,
)

GENERATIONS = "/images/generations"
EDITS = "/images/edits"
VARIATIONS = "/images/variations"
# error.code of a refused prompt or image: DALL·E's, and the GPT image models'
CONTENT_CODES = frozenset({"content_policy_violation", "moderation_blocked"})


def alpha_mask(image: bytes, mask: bytes) -> bytes:
    """OpenAI's mask from pixgate's: the image as RGBA, transparent where the mask is white
    (>= 128), opaque elsewhere; a mask of another size is stretched to the image's."""
    with Image.open(io.BytesIO(image)) as src, Image.open(io.BytesIO(mask)) as painted:
        rgba = src.convert("RGBA")
        grey = painted.convert("L")
    if grey.size != rgba.size:
        grey = grey.resize(rgba.size, Image.Resampling.NEAREST)
    rgba.putalpha(grey.point(lambda v: 0 if v >= 128 else 255))
    out = io.BytesIO()
    rgba.save(out, "PNG")
    return out.getvalue()


def _refine(response: httpx.Response) -> UpstreamFailure | None:
    """A refused prompt or image is `content`; an exhausted account (429
    `insufficient_quota`) is the channel's credentials' problem, not a busy upstream."""
    code = error_code(response)
    message = f"HTTP {response.status_code}: {upstream_message(response)}"
    if code in CONTENT_CODES:
        return UpstreamFailure("content", message, response.status_code)
    if code == "insufficient_quota":
        return UpstreamFailure("auth", message, response.status_code)
    return None


def _fields(call: Call) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": call.upstream_model, "n": call.req.n, "size": size(call)}
    # the GPT image models always answer base64 and refuse the parameter
    if not call.upstream_model.startswith("gpt-image"):
        fields["response_format"] = "b64_json"
    return fields


async def _post_form(
    call: Call, path: str, fields: dict[str, Any], files: dict[str, bytes]
) -> httpx.Response:
    return await send(
        call,
        "POST",
        path,
        data={k: str(v) for k, v in fields.items()},
        files={name: (f"{name}.png", data, "image/png") for name, data in files.items()},
        headers=bearer(call),
        refine=_refine,
    )


async def generate(call: Call) -> list[UpstreamImage]:
    require_kind(call)
    req = call.req
    fields = _fields(call)
    if req.kind == "txt2img":
        response = await send(
            call,
            "POST",
            GENERATIONS,
            json={**fields, "prompt": req.prompt},
            headers=bearer(call),
            refine=_refine,
        )
    elif req.kind == "variation":
        response = await _post_form(call, VARIATIONS, fields, {"image": input_image(call)})
    else:  # img2img, inpaint
        files = {"image": input_image(call)}
        if req.kind == "inpaint":
            if call.inputs.mask is None:
                raise UpstreamFailure("rejected", "an inpaint request needs a mask")
            files["mask"] = await asyncio.to_thread(alpha_mask, files["image"], call.inputs.mask)
        response = await _post_form(call, EDITS, {**fields, "prompt": req.prompt}, files)
    body = json_body(response)
    images = listed_images(body, "data")
    return images[: req.n]
