"""OpenAI's image edits and variations (multipart, as the `openai` SDK sends them), on the
same core and response shape as `/v1/images/generations`.

- `POST /v1/images/edits`: with a `mask` (or an image with transparent pixels), the
  transparent area is repainted and everything else keeps the input's pixels; without
  either, the whole image is reworked (img2img).
- `POST /v1/images/variations`: img2img of the input at `strength` 0.6 by default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field
from starlette.datastructures import FormData, UploadFile

from pixgate.accounts.keys import Caller
from pixgate.api.bodies import form_body
from pixgate.api.deps import Authenticated, authenticated, core, dialect
from pixgate.api.routes.tasks import TaskFields, respond
from pixgate.api.schemas import ASYNC_TASK, ImagesResponse, documented, request_body
from pixgate.api.validation import validate
from pixgate.core.shaping import closest_size, shape_request
from pixgate.errors import invalid
from pixgate.processing.inputs import (
    MAX_INPUT_BYTES,
    decode_image_async,
    mask_from_alpha_async,
)
from pixgate.spec.request import MAX_SEED

router = APIRouter(
    tags=["OpenAI images: edits and variations"],
    dependencies=[dialect("openai"), Depends(authenticated)],
)

_FILE_FIELDS = {"image", "image[]", "mask"}


class _Common(TaskFields):
    """Fields of both forms; `async`, `webhook_url` and `webhook_secret` (TaskFields) make
    the request asynchronous, as on /v1/images/generations."""

    # not strict: every multipart field arrives as text ("2", "true") and is converted
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


# The whole multipart body: an image and a mask at their limit each, and the fields.
MAX_FORM_BYTES = 2 * MAX_INPUT_BYTES + (1 << 20)
# Read after the key was checked; files spool to disk as they arrive.
Form = Annotated[
    FormData,
    Depends(form_body(MAX_FORM_BYTES, max_files=8, max_fields=64, max_part_size=MAX_INPUT_BYTES)),
]


def _split_form(form: FormData) -> tuple[dict[str, str], dict[str, list[UploadFile]]]:
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
    return await decode_image_async(await items[0].read(), name)


async def _generate(request: Request, caller: Caller, form: FormData, kind: str) -> JSONResponse:
    app_core = core(request)
    fields, files = _split_form(form)
    body = validate(EditForm if kind == "edit" else VariationForm, fields)
    admission = app_core.admission
    spec = admission.model(body.model) if body.model else admission.default_model()
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
            mask_image = await mask_from_alpha_async(upload_mask, any_mode=True)
            if mask_image is None:
                raise invalid(
                    "mask",
                    "must have fully transparent pixels where to edit",
                    "必须在需要编辑的区域包含完全透明的像素",
                )
        else:
            mask_image = await mask_from_alpha_async(image)
    mode = "inpaint" if mask_image is not None else ("img2img" if kind == "edit" else "variation")
    size = body.size or closest_size(spec, image.width, image.height)
    req = shape_request(
        spec,
        kind=mode,
        prompt=body.prompt,
        image=await admission.save_input(image, "image", "RGB"),
        mask=await admission.save_input(mask_image, "mask") if mask_image else None,
        strength=body.strength,
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


@router.post(
    "/v1/images/edits",
    summary="Edit an image (inpaint with a mask, else img2img)",
    openapi_extra=request_body(EditForm, files=("image", "mask")),
    **documented(ImagesResponse, also=ASYNC_TASK),
)
async def edit_image(request: Request, caller: Authenticated, form: Form) -> JSONResponse:
    return await _generate(request, caller, form, "edit")


@router.post(
    "/v1/images/variations",
    summary="Variations of an image",
    openapi_extra=request_body(VariationForm, files=("image",)),
    **documented(ImagesResponse, also=ASYNC_TASK),
)
async def image_variations(request: Request, caller: Authenticated, form: Form) -> JSONResponse:
    return await _generate(request, caller, form, "variation")
