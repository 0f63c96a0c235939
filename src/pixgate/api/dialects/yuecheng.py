"""The Yuecheng VisGen image API (seed 000): the key in the JSON body, a synchronous
answer with `success`, the image URLs, the key's `api_usage` and timings, and errors as
`{"success": false, "error": "..."}` with the seed's HTTP status codes.

Served at the seed's own path, `POST /API/AI-picture/endpoint_pic.php`, and at the alias
`POST /yuecheng/v1/generate`. Both answer browsers from any origin (the seed's `fetch`
example): see `pixgate.api.cors`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pixgate.api.bodies import json_body
from pixgate.api.deps import bearer_token, client_ip, core, dialect, public_base, request_id
from pixgate.api.results import content_notes, image_urls
from pixgate.api.schemas import documented, request_body
from pixgate.api.schemas_dialects import YuechengResponse
from pixgate.api.validation import validate
from pixgate.core.shaping import FieldNames, shape_request
from pixgate.errors import PixgateError, invalid
from pixgate.spec.catalog import YUECHENG_SIZES
from pixgate.spec.request import MAX_SEED

SEED_PATH = "/API/AI-picture/endpoint_pic.php"
ALIAS_PATH = "/yuecheng/v1/generate"
PATH_PREFIXES = ("/API/AI-picture/", "/yuecheng/")
DEFAULT_MODEL = "Yuecheng-VisGen/VisGen"

router = APIRouter(tags=["Yuecheng VisGen"], dependencies=[dialect("yuecheng")])

# The seed lists 400, 401, 403, 404, 429, 451, 500, 502 and 503; anything else is folded
# into the nearest of those so clients written against the seed see only codes it names.
SEED_STATUSES = {400, 401, 403, 404, 429, 451, 500, 502, 503}
_FOLDED = {405: 400, 409: 400, 413: 400, 504: 503}

# Where this dialect expects the key, instead of the core's Bearer wording.
_MESSAGES = {
    "missing_api_key": (
        'No API key provided: send "api_key" in the JSON body.',
        "未提供 API 密钥:请在 JSON 请求体中传入 api_key。",
    ),
}


class YuechengRequest(BaseModel):
    """The seed's request parameters, with its defaults and ranges."""

    # strict: the seed's clients send JSON numbers (`"batch_size": 1`); "1" or true is a 400
    model_config = ConfigDict(extra="forbid", strict=True)

    api_key: str | None = Field(default=None, max_length=256, description="yc-pic-...")
    prompt: str = Field(min_length=1, max_length=4000)
    model: str = Field(default=DEFAULT_MODEL, min_length=1, max_length=200)
    image_size: str = Field(default="1024x1024", max_length=20)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    batch_size: int = Field(default=1, ge=1, le=4)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_inference_steps: int | None = Field(
        default=None, ge=1, le=100, description="Default: the model's (20 for VisGen)."
    )
    guidance_scale: float = Field(default=7.5, ge=0, le=20)


def status_for(status: int) -> int:
    if status in SEED_STATUSES:
        return status
    return _FOLDED.get(status, 500 if status >= 500 else 400)


def render_error(err: PixgateError, lang: str) -> JSONResponse:
    override = _MESSAGES.get(err.code)
    message = (override[1] if lang == "zh" else override[0]) if override else err.message(lang)
    return JSONResponse(
        {"success": False, "error": message},
        status_code=status_for(err.status),
        headers=err.headers,
    )


def _api_key(request: Request, body: dict) -> str | None:
    """The body's `api_key` (the seed's place for it), else a Bearer header."""
    raw = body.get("api_key")
    if raw is not None and not isinstance(raw, str):
        raise invalid("api_key", "must be a string", "必须是字符串")
    return raw or bearer_token(request)


# The key is in the body, so the body is read first, but never more than its 1 MB cap.
Body = Annotated[dict[str, Any], Depends(json_body())]
_DOC = {"openapi_extra": request_body(YuechengRequest), **documented(YuechengResponse)}


@router.post(SEED_PATH, summary="Yuecheng: generate images (seed path)", **_DOC)
@router.post(ALIAS_PATH, summary="Yuecheng: generate images", **_DOC)
async def generate(request: Request, raw: Body) -> JSONResponse:
    app_core = core(request)
    caller = await app_core.identity.authenticate(_api_key(request, raw), client_ip(request))
    body = validate(YuechengRequest, raw)
    size = body.image_size.lower()
    if size not in YUECHENG_SIZES:
        allowed = ", ".join(YUECHENG_SIZES)
        raise invalid(
            "image_size",
            f"must be one of {allowed} (got {body.image_size!r})",
            f"必须是 {allowed} 之一(收到 {body.image_size!r})",
        )
    spec = app_core.admission.model(body.model)
    req = shape_request(
        spec,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        size=size,
        n=body.batch_size,
        steps=body.num_inference_steps,
        guidance=body.guidance_scale,
        seed=body.seed,
        names=FieldNames(size="image_size", n="batch_size"),
        defaulted=() if "guidance_scale" in body.model_fields_set else ("guidance",),
    )
    result = await app_core.tasks.generate(caller, req, request_id(request))
    usage = await app_core.identity.api_usage(caller.key.id, spec)
    urls = image_urls(app_core, result, public_base(request))
    return JSONResponse(
        {
            "success": True,
            "images": [{"url": url} for url in urls],
            "model": spec.name,
            "images_generated": len(result.images),
            "api_usage": usage,
            "timings": {"inference": round(result.inference_seconds, 2)},
            "seed": result.seed,
            **content_notes(result),
        }
    )
