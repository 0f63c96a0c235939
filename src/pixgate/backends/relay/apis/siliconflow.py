"""The SiliconFlow images API (seed 001), as a channel: `POST /images/generations` with
`Authorization: Bearer`, JSON {model, prompt, image_size "WxH", batch_size (= n),
num_inference_steps, guidance_scale, seed, negative_prompt (when set), image (img2img: a
`data:image/png;base64,...` URI)}. `base_url` ends where the path starts
(`https://api.siliconflow.cn/v1`).

The answer is `images[i].url` (links valid for an hour, which the router downloads at once);
`images[i].b64_json` is taken too, as relays in SiliconFlow's shape (and pixgate) may send
it. Errors are `{code, message, data}` with the HTTP status saying what kind; pixgate's
refusal of a prompt is a 451 (content)."""

from __future__ import annotations

from typing import Any

from pixgate.backends.relay.apis.base import (
    Call,
    UpstreamImage,
    bearer,
    data_uri,
    input_image,
    json_body,
    listed_images,
    require_kind,
    send,
    size,
    without_defaults,
)

GENERATIONS = "/images/generations"


def payload(call: Call) -> dict[str, Any]:
    req = call.req
    body: dict[str, Any] = {
        "model": call.upstream_model,
        "prompt": req.prompt,
        "image_size": size(call),
        "batch_size": req.n,
        "num_inference_steps": req.steps,
        "guidance_scale": req.guidance,
        "seed": req.seed,
    }
    if req.negative_prompt:
        body["negative_prompt"] = req.negative_prompt
    if req.kind == "img2img":
        body["image"] = data_uri(input_image(call))
    return without_defaults(
        body, req, {"steps": "num_inference_steps", "guidance": "guidance_scale"}
    )


async def generate(call: Call) -> list[UpstreamImage]:
    require_kind(call)
    response = await send(call, "POST", GENERATIONS, json=payload(call), headers=bearer(call))
    body = json_body(response)
    images = listed_images(body, "images")
    return images[: call.req.n]
