"""OpenAI's image edits and variations (multipart, as the `openai` SDK sends them), on the
same core and response shape as `/v1/images/generations`.

- `POST /v1/images/edits`: with a `mask` (or an image with transparent pixels), the
  transparent area is repainted and everything else keeps the input's pixels; without
  either, the whole image is reworked (img2img).
- `POST /v1/images/variations`: img2img of the input at `strength` 0.6 by default.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field
from starlette.datastructures import UploadFile

from pixgate.api.deps import authenticated, core
from pixgate.api.routes.tasks import TaskFields, respond
from pixgate.api.validation import validate
from pixgate.core.shaping import closest_size, shape_request
from pixgate.errors import invalid
from pixgate.processing.inputs import MAX_INPUT_BYTES, decode_image, mask_from_alpha, save_input
from pixgate.spec.request import MAX_SEED

router = APIRouter(tags=["OpenAI images: edits and variations"])

_FILE_FIELDS = {"image", "image[]", "mask"}


class _Common(TaskFields):
    """Fields of both forms; `async`, `webhook_url` and `webhook_secret` (TaskFields) make
    the request asynchronous, as on /v1/images/generations."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=200)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = Field(default=None, max_length=20)
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    user: str | None = Field(default=None, max_length=256)
    quality: str | None = Field(default=None, max_length=20, description="Accepted; no effect.")
    background: Literal["auto", "opaque"] | None = None
    input_fidelity: Literal["high", "low"] | None = Field(
        default=None, description="Accepted; no effect."
    )
    negative_prompt: str | None = Field(default=None, max_length=4000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_inference_steps: int | None = Field(default=None, ge=1, le=100)
    guidance_scale: float | None = Field(default=None, ge=0, le=20)
    strength: float | None = Field(
        default=None, ge=0.01, le=1, description="How much of the input to rework (0.01-1)."
    )
    sampler: str | None = Field(default=None, max_length=64)


class EditForm(_Common):
    prompt: str = Field(min_length=1, max_length=4000)


class VariationForm(_Common):
    prompt: str = Field(default="", max_length=4000, description="pixgate extension.")


async def _read_form(request: Request) -> tuple[dict[str, str], dict[str, list[UploadFile]]]:
    form = await request.form(max_files=8, max_fields=64, max_part_size=MAX_INPUT_BYTES)
    fields: dict[str, str] = {}
    files: dict[str, list[UploadFile]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in _FILE_FIELDS:
                raise invalid(name, "is not a file field; files go in 'image' and 'mask'")
            files.setdefault("image" if name == "image[]" else name, []).append(value)
        else:
            fields[name] = value
    return fields, files


async def _one_image(files: dict[str, list[UploadFile]], name: str, required: bool = True):
    items = files.get(name, [])
    if not items:
        if required:
            raise invalid(
                name,
                "is required: send the image file in the multipart body",
                "必填:请在 multipart 请求体中上传图片文件",
            )
        return None
    if len(items) > 1:
        raise invalid(
            name,
            f"takes one image on this server (got {len(items)})",
            f"只接受一张图片(收到 {len(items)} 张)",
        )
    return decode_image(await items[0].read(), name)


async def _generate(request: Request, kind: str) -> JSONResponse:
    app_core = core(request)
    caller = await authenticated(request)
    fields, files = await _read_form(request)
    body = validate(EditForm if kind == "edit" else VariationForm, fields)
    spec = app_core.model(body.model) if body.model else app_core.default_model()
    image = await _one_image(files, "image")
    mask_image = None
    if kind == "edit":
        upload_mask = await _one_image(files, "mask", required=False)
        if upload_mask is not None:
            if upload_mask.size != image.size:
                raise invalid(
                    "mask",
                    f"must be the same size as image ({image.width}x"
                    f"{image.height}, got {upload_mask.width}x{upload_mask.height})",
                )
            mask_image = mask_from_alpha(upload_mask.convert("RGBA"))
            if mask_image is None:
                raise invalid(
                    "mask",
                    "must have fully transparent pixels where to edit",
                    "必须在需要编辑的区域包含完全透明的像素",
                )
        else:
            mask_image = mask_from_alpha(image)
    mode = "inpaint" if mask_image is not None else ("img2img" if kind == "edit" else "variation")
    size = body.size or closest_size(spec, image.width, image.height)
    req = shape_request(
        spec,
        kind=mode,
        prompt=body.prompt,
        image=save_input(app_core.storage, image.convert("RGB"), "image"),
        mask=save_input(app_core.storage, mask_image, "mask") if mask_image else None,
        strength=body.strength
        if body.strength is not None
        else (1.0 if mode == "inpaint" else 0.75 if mode == "img2img" else 0.6),
        negative_prompt=body.negative_prompt,
        size=size,
        n=body.n,
        steps=body.num_inference_steps,
        guidance=body.guidance_scale,
        seed=body.seed,
        output_format=body.output_format or "png",
        output_compression=body.output_compression,
        user=body.user,
        sampler=body.sampler,
    )
    return await respond(request, caller, req, body, body.response_format)


def _form_schema(form: type[_Common], files: tuple[str, ...]) -> dict:
    """The multipart body's OpenAPI schema: the form's fields plus its file parts."""
    schema = form.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    schema["properties"] = {**dict.fromkeys(files, binary), **schema["properties"]}
    schema["required"] = ["image", *schema.get("required", [])]
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


@router.post(
    "/v1/images/edits",
    summary="Edit an image (inpaint with a mask, else img2img)",
    openapi_extra=_form_schema(EditForm, ("image", "mask")),
)
async def edit_image(request: Request) -> JSONResponse:
    return await _generate(request, "edit")


@router.post(
    "/v1/images/variations",
    summary="Variations of an image",
    openapi_extra=_form_schema(VariationForm, ("image",)),
)
async def image_variations(request: Request) -> JSONResponse:
    return await _generate(request, "variation")
