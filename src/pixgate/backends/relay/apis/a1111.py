"""AUTOMATIC1111's web UI API (also Forge and SD.Next, which keep it), as a channel:
`POST /sdapi/v1/txt2img` and `POST /sdapi/v1/img2img` (img2img and inpainting). `base_url`
is the web UI's root (`http://gpu-box:7860`).

Sent: prompt, negative_prompt, width, height, steps, cfg_scale (guidance), seed (A1111 gives
image i of a batch seed + i, as pixgate does), sampler_name (when set; pixgate's sampler
names are A1111's), batch_size = n with n_iter 1, do_not_save_grid (no grid image among the
results); the hires fix as enable_hr, hr_scale, denoising_strength and hr_second_pass_steps
(0: the request's steps). img2img adds init_images [base64] and denoising_strength (the
request's strength, A1111's 0.75 when unset); inpainting adds mask (base64; white =
repaint, A1111's convention too) and inpainting_fill 1 (start from the original pixels).
The upstream's loaded checkpoint draws: `upstream_model` is not sent.

A1111 needs no key. Started with `--api-auth user:password`, it wants HTTP Basic auth:
an `api_key` of the form `user:password` is sent so; any other key as a Bearer token (for a
proxy in front). The answer is `images`, base64 strings; a 422 (`detail`, FastAPI's
validation errors) is rejected with its messages.
"""

from __future__ import annotations

from typing import Any

import httpx

from pixgate.backends.relay.apis.base import (
    Call,
    UpstreamFailure,
    UpstreamImage,
    b64decode,
    b64encode,
    bearer,
    error_body,
    input_image,
    json_body,
    require_kind,
    send,
    without_defaults,
)

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"


def auth_headers(call: Call) -> dict[str, str]:
    key = call.channel.secret("api_key")
    if key and ":" in key:
        return {"Authorization": "Basic " + b64encode(key.encode())}
    return bearer(call)


def _refine(response: httpx.Response) -> UpstreamFailure | None:
    """FastAPI's 422: `detail` is a list of {loc, msg}; name each field and its problem."""
    body = error_body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if response.status_code != 422 or not isinstance(detail, list) or not detail:
        return None
    parts = []
    for item in detail:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        else:
            parts.append(str(item))
    return UpstreamFailure("rejected", "HTTP 422: " + "; ".join(parts), 422)


def payload(call: Call) -> dict[str, Any]:
    req = call.req
    body: dict[str, Any] = {
        "prompt": req.prompt,
        "negative_prompt": req.negative_prompt or "",
        "width": req.width,
        "height": req.height,
        "steps": req.steps,
        "cfg_scale": req.guidance,
        "seed": req.seed,
        "batch_size": req.n,
        "n_iter": 1,
        "do_not_save_grid": True,
    }
    if req.sampler:
        body["sampler_name"] = req.sampler
    if req.kind == "txt2img" and req.hires is not None:
        body.update(
            enable_hr=True,
            hr_scale=req.hires.scale,
            denoising_strength=req.hires.strength,
            hr_second_pass_steps=req.hires.steps or 0,
        )
    if req.kind in ("img2img", "inpaint"):
        body["init_images"] = [b64encode(input_image(call))]
        if req.strength is not None:
            body["denoising_strength"] = req.strength
    if req.kind == "inpaint":
        if call.inputs.mask is None:
            raise UpstreamFailure("rejected", "an inpaint request needs a mask")
        body["mask"] = b64encode(call.inputs.mask)
        body["inpainting_fill"] = 1
    return without_defaults(body, req, {"steps": "steps", "guidance": "cfg_scale"})


async def generate(call: Call) -> list[UpstreamImage]:
    require_kind(call)
    path = TXT2IMG if call.req.kind == "txt2img" else IMG2IMG
    response = await send(
        call, "POST", path, json=payload(call), headers=auth_headers(call), refine=_refine
    )
    body = json_body(response)
    encoded = body.get("images") if isinstance(body, dict) else None
    if not isinstance(encoded, list) or not encoded:
        raise UpstreamFailure("bad_response", "the answer has no images (images is empty)")
    # extensions (ControlNet's maps) append images after the batch's
    return [UpstreamImage(data=b64decode(item)) for item in encoded[: call.req.n]]
