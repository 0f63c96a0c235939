"""The OpenAI / SiliconFlow images API (seed 001): one request shape accepting both
ecosystems' fields, one response serving both (`data[]` and `images[]`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from pixgate.api.deps import Authenticated, authenticated, core, dialect
from pixgate.api.results import error_object
from pixgate.api.routes.tasks import TaskFields, respond
from pixgate.api.schemas import (
    ASYNC_TASK,
    ImagesResponse,
    LoraList,
    ModelList,
    SamplerList,
    StyleList,
    documented,
    request_body,
)
from pixgate.api.validation import json_model
from pixgate.core.service import Pixgate
from pixgate.core.shaping import FieldNames, closest_size, shape_request
from pixgate.errors import PixgateError
from pixgate.processing.inputs import MAX_INPUT_BYTES
from pixgate.spec.request import MAX_SEED, HiresFix, LoraRef

# A JSON body may carry an input image as base64 (4/3 of its bytes) plus the other fields.
MAX_JSON_WITH_IMAGE = MAX_INPUT_BYTES * 4 // 3 + 64 * 1024

# Every route needs a key: a forgotten parameter cannot open one.
router = APIRouter(
    tags=["OpenAI / SiliconFlow images"], dependencies=[dialect("openai"), Depends(authenticated)]
)


class ImageGenerationRequest(TaskFields):
    """`POST /v1/images/generations`: OpenAI's fields plus SiliconFlow's (seed 001), and
    pixgate's `async` / `webhook_url` (docs/tasks-and-webhooks.md)."""

    # strict: `"seed": "5"` or `"async": "yes"` are 400s (the seeds send JSON numbers/bools)
    model_config = ConfigDict(extra="forbid", strict=True)

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
        default=None,
        max_length=64,
        description="pixgate extension: a style id (GET /v1/styles). OpenAI's 'vivid' and "
        "'natural' are accepted and have no effect unless configured as style ids.",
    )
    lora: str | list[LoraRef] | None = Field(
        default=None,
        description="pixgate extension: LoRAs to apply, as 'name', 'name:scale' or a list of "
        "{name, scale} (scale 0-2, default the LoRA's own). GET /v1/loras lists them.",
    )
    hires: bool | HiresFix | None = Field(
        default=None,
        description="pixgate extension: hires fix. true = upscale 2x and refine at strength "
        "0.5; or {scale 1-4, strength 0-1, steps}. The images come out at the larger size.",
    )
    sampler: str | None = Field(
        default=None,
        max_length=64,
        description="pixgate extension: an AUTOMATIC1111 sampler name, e.g. 'DPM++ 2M Karras' "
        "(GET /v1/samplers lists them).",
    )


# The body, read after the key was checked (so a stranger's upload is refused unread)
GenerationBody = Annotated[
    ImageGenerationRequest, Depends(json_model(ImageGenerationRequest, MAX_JSON_WITH_IMAGE))
]


def render_error(err: PixgateError, lang: str) -> JSONResponse:
    body = {"error": error_object(err, lang)}
    status = err.status
    if err.code == "content_refused":  # OpenAI's refusal: a 400 with its own code
        body["error"].update(type="invalid_request_error", code="content_policy_violation")
        status = 400
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
    openapi_extra=request_body(ImageGenerationRequest),
    **documented(ImagesResponse, also=ASYNC_TASK),
)
async def create_images(
    request: Request, caller: Authenticated, body: GenerationBody
) -> JSONResponse:
    app_core = core(request)
    admission = app_core.admission
    spec = admission.model(body.model) if body.model else admission.default_model()
    size = _pick(body.size, body.image_size, ("size", "image_size"))
    n = _pick(body.n, body.batch_size, ("n", "batch_size"))
    names = FieldNames(
        size="size" if body.size is not None else "image_size",
        n="n" if body.n is not None else "batch_size",
    )
    image_path = None
    if body.image is not None:
        image = await admission.input_image(body.image, "image")
        image_path = await admission.save_input(image, "image", "RGB")
        if size is None:
            size = closest_size(spec, image.width, image.height)
    prompt, negative = body.prompt, body.negative_prompt
    if body.style is not None and not _openai_style(app_core, body.style):
        prompt, negative = admission.style(body.style).apply(prompt, negative)
    req = shape_request(
        spec,
        kind="img2img" if image_path else "txt2img",
        image=image_path,
        strength=body.strength if image_path else None,
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
        lora=admission.lora_refs(body.lora),
        hires=HiresFix() if body.hires is True else body.hires or None,
        names=names,
    )
    return await respond(request, caller, req, body, body.response_format)


def _openai_style(app_core: Pixgate, style: str) -> bool:
    """OpenAI's DALL-E 3 style values, unless the operator made them style ids."""
    configured = {s.id for s in app_core.admission.styles()}
    return style in ("vivid", "natural") and style not in configured


@router.get("/v1/models", summary="List the model catalog", **documented(ModelList))
async def list_models(request: Request) -> JSONResponse:
    app_core = core(request)
    data = [
        {
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": "pixgate",
            # a relayed model says so, not which upstreams serve it (the operator's business)
            "source": "relay" if m.channels else m.source,
            "demo": m.demo,
            "random_weights": m.source_kind == "builtin",
            "description": m.description,
            "price": str(m.price),
            "sizes": m.sizes,
            "size_range": list(m.size_range) if m.size_range else None,
            "flow_match": m.is_flow_match,
            "default_size": m.default_size,
            "max_images": m.max_images,
            "max_steps": m.max_steps,
        }
        for m in app_core.admission.models()
    ]
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/v1/samplers", summary="Sampler names accepted in `sampler`", **documented(SamplerList)
)
async def list_samplers(request: Request) -> JSONResponse:
    from pixgate.spec.samplers import sampler_names

    return JSONResponse(
        {
            "object": "list",
            "data": [{"name": n} for n in sampler_names()],
            "flow_match": sampler_names(flow_match=True),
        }
    )


@router.get("/v1/styles", summary="Style ids accepted in `style`", **documented(StyleList))
async def list_styles(request: Request) -> JSONResponse:
    styles = core(request).admission.styles()
    return JSONResponse({"object": "list", "data": [s.model_dump() for s in styles]})


@router.get("/v1/loras", summary="LoRA names accepted in `lora`", **documented(LoraList))
async def list_loras(request: Request) -> JSONResponse:
    admission = core(request).admission
    models = admission.models()
    data = [
        {
            "name": lora.name,
            "description": lora.description,
            "default_scale": lora.default_scale,
            "models": [m.name for m in models if not m.loras or lora.name in m.loras],
        }
        for lora in admission.loras()
    ]
    return JSONResponse({"object": "list", "data": data})
