"""The OpenAI / SiliconFlow images API (seed 001): one request shape accepting both
ecosystems' fields, one response serving both (`data[]` and `images[]`)."""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pixgate.api.context import authenticated, core, public_base, request_id
from pixgate.api.validation import parse_json_object, validate
from pixgate.errors import PixgateError
from pixgate.inputs import MAX_INPUT_BYTES, image_from_field, save_input
from pixgate.request import MAX_SEED
from pixgate.service import GenerationResult, Pixgate
from pixgate.shaping import FieldNames, closest_size, shape_request

# A JSON body may carry an input image as base64 (4/3 of its bytes) plus the other fields.
MAX_JSON_WITH_IMAGE = MAX_INPUT_BYTES * 4 // 3 + 64 * 1024

router = APIRouter(tags=["OpenAI / SiliconFlow images"])

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ImageGenerationRequest(BaseModel):
    """`POST /v1/images/generations`: OpenAI's fields plus SiliconFlow's (seed 001)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = Field(default=None, max_length=200)
    n: int | None = Field(default=None, ge=1, le=10, description="OpenAI: images to make.")
    batch_size: int | None = Field(default=None, ge=1, le=4, description="SiliconFlow: 1-4.")
    size: str | None = Field(default=None, max_length=20, description="WIDTHxHEIGHT or auto.")
    image_size: str | None = Field(default=None, max_length=20, description="SiliconFlow size.")
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] | None = Field(
        default=None, description="Accepted for compatibility; has no effect."
    )
    style: Literal["vivid", "natural"] | None = Field(
        default=None, description="Accepted for compatibility; has no effect."
    )
    background: Literal["auto", "opaque"] | None = None
    moderation: Literal["auto", "low"] | None = None
    user: str | None = Field(default=None, max_length=256)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_inference_steps: int | None = Field(default=None, ge=1, le=100)
    guidance_scale: float | None = Field(default=None, ge=0, le=20)
    prompt_enhancement: bool | None = Field(
        default=None, description="Rewrite the prompt before generating (later release)."
    )
    image: str | None = Field(
        default=None,
        description="SiliconFlow: an input image (data URI, base64 or http(s) URL) for "
        "image-to-image.",
    )
    strength: float | None = Field(
        default=None, ge=0.01, le=1, description="pixgate extension: img2img strength."
    )
    style: str | None = Field(
        default=None, max_length=64, description="pixgate extension: a style id (GET /v1/styles)."
    )
    sampler: str | None = Field(
        default=None,
        max_length=64,
        description="pixgate extension: an AUTOMATIC1111 sampler name, e.g. 'DPM++ 2M Karras' "
        "(GET /v1/samplers lists them).",
    )


def render_error(err: PixgateError, lang: str) -> JSONResponse:
    status = err.status
    etype = _ERROR_TYPES.get(status, "server_error")
    body = {
        "error": {"message": err.message(lang), "type": etype, "param": err.param, "code": err.code}
    }
    return JSONResponse(body, status_code=status, headers=err.headers)


def _pick(a: Any, b: Any, names: tuple[str, str]) -> Any:
    """Two fields meaning the same thing: take whichever was sent; both must agree."""
    if a is not None and b is not None and a != b:
        raise PixgateError(
            "conflicting_values",
            param=names[0],
            args_={"other": names[1], "detail": f"{a} vs {b}"},
        )
    return a if a is not None else b


@router.post(
    "/v1/images/generations",
    summary="Create images from a prompt",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ImageGenerationRequest.model_json_schema()}},
        }
    },
)
async def create_images(request: Request) -> JSONResponse:
    app_core = core(request)
    caller = await authenticated(request)
    body = validate(
        ImageGenerationRequest, parse_json_object(await request.body(), MAX_JSON_WITH_IMAGE)
    )
    spec = app_core.model(body.model) if body.model else app_core.default_model()
    size = _pick(body.size, body.image_size, ("size", "image_size"))
    n = _pick(body.n, body.batch_size, ("n", "batch_size"))
    names = FieldNames(
        size="size" if body.size is not None else "image_size",
        n="n" if body.n is not None else "batch_size",
    )
    image_path = None
    if body.image is not None:
        image = await image_from_field(body.image, "image", app_core.settings.fetch_image_urls)
        image_path = save_input(app_core.storage, image.convert("RGB"), "image")
        if size is None:
            size = closest_size(spec, image.width, image.height)
    prompt, negative = body.prompt, body.negative_prompt
    if body.style is not None:
        prompt, negative = app_core.style(body.style).apply(prompt, negative)
    req = shape_request(
        spec,
        kind="img2img" if image_path else "txt2img",
        image=image_path,
        strength=(body.strength or 0.75) if image_path else None,
        prompt=prompt,
        negative_prompt=negative,
        size=size,
        n=n,
        steps=body.num_inference_steps,
        guidance=body.guidance_scale,
        seed=body.seed,
        output_format=body.output_format or "png",
        output_compression=body.output_compression,
        prompt_enhancement=bool(body.prompt_enhancement),
        user=body.user,
        sampler=body.sampler,
        names=names,
    )
    result = await app_core.generate(caller, req, request_id(request))
    return JSONResponse(render_result(request, app_core, result, body.response_format or "url"))


def render_result(request: Request, app_core: Pixgate, result: GenerationResult, fmt: str) -> dict:
    base = public_base(request)
    urls = [base + app_core.storage.signed_path(i.path, i.expires) for i in result.images]
    if fmt == "b64_json":
        data = [
            {"b64_json": base64.b64encode(app_core.storage.read(i.path)).decode()}
            for i in result.images
        ]
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


@router.get("/v1/models", summary="List the model catalog")
async def list_models(request: Request) -> JSONResponse:
    app_core = core(request)
    await authenticated(request)
    data = [
        {
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": "pixgate",
            "source": m.source,
            "demo": m.demo,
            "random_weights": m.source_kind == "builtin",
            "description": m.description,
            "price": str(m.price),
            "sizes": m.sizes,
            "default_size": m.default_size,
            "max_images": m.max_images,
            "max_steps": m.max_steps,
        }
        for m in app_core.catalog
    ]
    return JSONResponse({"object": "list", "data": data})


@router.get("/v1/samplers", summary="Sampler names accepted in `sampler`")
async def list_samplers(request: Request) -> JSONResponse:
    from pixgate.engine.samplers import sampler_names

    await authenticated(request)
    return JSONResponse(
        {
            "object": "list",
            "data": [{"name": n} for n in sampler_names()],
            "flow_match": sampler_names(flow_match=True),
        }
    )


@router.get("/v1/styles", summary="Style ids accepted in `style`")
async def list_styles(request: Request) -> JSONResponse:
    await authenticated(request)
    styles = core(request).settings.styles
    return JSONResponse({"object": "list", "data": [s.model_dump() for s in styles]})
