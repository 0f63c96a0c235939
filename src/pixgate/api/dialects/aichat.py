"""aichat image-to-image tasks (seed 003): `POST /api/image2image` takes a multipart
`image` and a `params` JSON string and answers at once with a `task_id`;
`POST /api/v1/draw/query` reports the task's status, progress and, when done, its images.

The key comes as `?key=` or an `apikey` header. A key with a signing secret must also send
`sign: md5(<query string> + <secret>)` (the seed's PHP demo). Every answer, errors
included, has one envelope: `{"code", "msg", "data"}`, where `data` is a task status
(`task_id`, `status`, `progress`, `images`, `error`). The seed shows no responses; this
shape is pixgate's, documented in docs/api-aichat.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData, UploadFile

from pixgate.accounts.keys import Caller
from pixgate.api.bodies import form_body, load_json
from pixgate.api.deps import (
    bearer_token,
    client_ip,
    core,
    dialect,
    language,
    public_base,
    request_id,
)
from pixgate.api.dialects.aichat_params import Image2ImageParams, size_ids, to_request
from pixgate.api.results import content_notes, image_urls
from pixgate.api.schemas import documented, request_body
from pixgate.api.schemas_dialects import (
    AichatModels,
    AichatSamplers,
    AichatStyles,
    AichatSubmitted,
    AichatTaskResponse,
)
from pixgate.api.validation import json_model, validate
from pixgate.core.views import TaskView
from pixgate.errors import PixgateError, invalid
from pixgate.processing.inputs import MAX_INPUT_BYTES, decode_image_async
from pixgate.spec.catalog import stable_id
from pixgate.spec.samplers import sampler_names

SUBMIT_PATH = "/api/image2image"
# Every example in the seed writes the address as https://aichatapi.com//api/image2image;
# a client that swaps only the host sends the double slash, so it is served too.
SEED_SUBMIT_PATH = "/" + SUBMIT_PATH
QUERY_PATH = "/api/v1/draw/query"
PATH_PREFIXES = (SUBMIT_PATH, SEED_SUBMIT_PATH, "/api/v1/draw/")

router = APIRouter(tags=["aichat image-to-image tasks"], dependencies=[dialect("aichat")])

# Where this dialect expects the key, instead of the core's Bearer wording.
_MESSAGES = {
    "missing_api_key": (
        "No API key provided: send it as ?key=<key> or in the 'apikey' header.",
        "未提供 API 密钥:请使用 ?key=<密钥> 或 apikey 请求头传入。",
    ),
}


def _envelope(code: int, msg: str, data: Any) -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def render_error(err: PixgateError, lang: str) -> JSONResponse:
    """An error as a task that failed before it started: HTTP status = `code`."""
    override = _MESSAGES.get(err.code)
    message = (override[1] if lang == "zh" else override[0]) if override else err.message(lang)
    data = {
        "task_id": None,
        "status": "failed",
        "progress": 0,
        "images": [],
        "error": {"code": err.code, "param": err.param, "message": message},
    }
    return JSONResponse(
        _envelope(err.status, message, data), status_code=err.status, headers=err.headers
    )


def _ok(data: Any, **extra: Any) -> JSONResponse:
    return JSONResponse({**_envelope(200, "success", data), **extra})


# --- authentication and signing ---------------------------------------------------------
def _raw_key(request: Request) -> str | None:
    return request.query_params.get("key") or request.headers.get("apikey") or bearer_token(request)


def expected_sign(query_string: str, secret: str) -> str:
    """The seed's signature: md5 of the query string (as sent, without '?') followed by
    the key's signing secret (SK), lower-case hex."""
    return hashlib.md5((query_string + secret).encode()).hexdigest()


async def aichat_caller(request: Request) -> Caller:
    """The key's caller; for a key with a signing secret, only with a correct `sign`."""
    app_core = core(request)
    ip = client_ip(request)
    identity = app_core.identity
    caller = await identity.authenticate(_raw_key(request), ip)
    secret = identity.signing_secret(caller)
    if secret is None:
        return caller
    sent = request.headers.get("sign", "").strip().lower()
    if not sent:
        await identity.signature_failed(ip)
        raise PixgateError("signature_required", param="sign")
    query = request.scope.get("query_string", b"").decode("latin-1")
    if not hmac.compare_digest(sent, expected_sign(query, secret)):
        await identity.signature_failed(ip)
        raise PixgateError("invalid_signature", param="sign")
    return caller


# Every route takes the key this way (declared before any body, so a stranger's upload
# is refused before it is read).
AichatCaller = Annotated[Caller, Depends(aichat_caller)]


# --- submitting ------------------------------------------------------------------------
def _unreadable(detail: str) -> PixgateError:
    return invalid(
        "image",
        f"the multipart/form-data body could not be read ({detail})",
        f"无法解析 multipart/form-data 请求体({detail})",
    )


# The image at its limit and `params`; files spool to disk while the cap is applied.
Form = Annotated[
    FormData,
    Depends(
        form_body(
            MAX_INPUT_BYTES + (1 << 20),
            max_files=2,
            max_fields=8,
            max_part_size=MAX_INPUT_BYTES,
            unreadable=_unreadable,
        )
    ),
]


def _read_form(form: FormData) -> tuple[UploadFile, dict[str, Any]]:
    """The multipart body's one `image` file and its `params` object."""
    images: list[UploadFile] = []
    params: str | None = None
    for name, value in form.multi_items():
        if name == "image" and isinstance(value, UploadFile):
            images.append(value)
        elif name == "params" and isinstance(value, str):
            params = value
        elif name not in ("image", "params"):
            raise PixgateError("unknown_parameter", param=name)
        else:
            raise invalid(
                name,
                "must be a file" if name == "image" else "must be a JSON string, not a file",
                "必须是文件" if name == "image" else "必须是 JSON 字符串,而不是文件",
            )
    if not images:
        raise invalid(
            "image",
            "is required: send the image file as multipart/form-data field 'image'",
            "必填:请以 multipart/form-data 的 image 字段上传图片文件",
        )
    if len(images) > 1:
        raise invalid(
            "image", f"takes one file (got {len(images)})", f"只接受一个文件(收到 {len(images)} 个)"
        )
    if params is None:
        raise PixgateError("missing_field", param="params")
    words = ("must be a JSON object string ({})", "必须是 JSON 对象字符串({})")
    parsed = load_json(params or "{}", "params", words)
    if not isinstance(parsed, dict):
        raise invalid("params", "must be a JSON object string", "必须是 JSON 对象字符串")
    return images[0], parsed


@router.post(
    SUBMIT_PATH,
    summary="aichat: submit an image-to-image task",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image", "params"],
                        "properties": {
                            "image": {"type": "string", "format": "binary"},
                            "params": {
                                "type": "string",
                                "description": "Image2ImageParams as a JSON string.",
                            },
                        },
                    }
                }
            },
        }
    },
    **documented(AichatSubmitted),
)
@router.post(SEED_SUBMIT_PATH, include_in_schema=False)
async def image2image(request: Request, caller: AichatCaller, form: Form) -> JSONResponse:
    app_core = core(request)
    upload, raw_params = _read_form(form)
    params = validate(Image2ImageParams, raw_params)
    image = await decode_image_async(await upload.read(MAX_INPUT_BYTES + 1), "image")  # +1: too big
    req = to_request(app_core, params, image.width, image.height)
    admission = app_core.admission
    await admission.moderate(caller, req)  # before the upload is stored; submit checks it again
    req = req.model_copy(update={"image": await admission.save_input(image, "image", "RGB")})
    job_id = await admission.submit(caller, req, request_id(request))
    # The seed: "返回的参数里会有一个task_id" - at the top level, and in the task status.
    return _ok(task_json(request, await app_core.tasks.task(caller, job_id)), task_id=job_id)


# --- querying --------------------------------------------------------------------------
class TaskQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    task_id: str | int = Field(description="The task_id /api/image2image returned.")


# The core's field names -> this dialect's, for errors found once the model is loaded.
JOB_PARAMS = {"sampler": "simper", "lora": "lora_scale"}


def task_json(request: Request, job: TaskView) -> dict[str, Any]:
    """A job as the dialect's task status; images only once it succeeded."""
    app_core = core(request)
    status = job.task_status
    images = []
    if status == "succeeded":
        result = job.result()
        width, height = job.output_size
        urls = image_urls(app_core, result, public_base(request))
        images = [
            {"url": url, "seed": i.seed, "width": width, "height": height}
            for url, i in zip(urls, result.images, strict=True)
        ]
    error = None
    if status in ("failed", "cancelled"):
        err = app_core.tasks.job_error(job)
        if err.param in JOB_PARAMS:  # errors found by the worker name the core's fields
            err.param = JOB_PARAMS[err.param]
        error = {
            "code": job.error_code,
            "param": err.param,
            "message": err.message(language(request)),
        }
    return {
        "task_id": job.id,
        "status": status,
        "progress": 100 if status == "succeeded" else round(job.progress * 100),
        "images": images,
        "seed": job.seed,
        "number": job.n,
        "images_generated": job.n_succeeded,
        "inference_seconds": round(job.inference_seconds or 0.0, 3),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": error,
        **content_notes(job.result()),
    }


# The body, read once the key was accepted.
TaskIdBody = Annotated[TaskQuery, Depends(json_model(TaskQuery))]


@router.post(
    QUERY_PATH,
    summary="aichat: a task's status, progress and images",
    openapi_extra=request_body(TaskQuery),
    **documented(AichatTaskResponse),
)
async def query_task(request: Request, caller: AichatCaller, body: TaskIdBody) -> JSONResponse:
    job = await core(request).tasks.task(caller, str(body.task_id))
    return _ok(task_json(request, job))


@router.post(
    "/api/v1/draw/cancel",
    summary="aichat (pixgate extension): cancel a task",
    openapi_extra=request_body(TaskQuery),
    **documented(AichatTaskResponse),
)
async def cancel_task(request: Request, caller: AichatCaller, body: TaskIdBody) -> JSONResponse:
    job = await core(request).tasks.cancel_task(caller, str(body.task_id))
    return _ok(task_json(request, job))


# --- catalog ---------------------------------------------------------------------------
@router.get(
    "/api/v1/draw/models",
    summary="aichat: model_id values",
    dependencies=[Depends(aichat_caller)],
    **documented(AichatModels),
)
async def list_models(request: Request) -> JSONResponse:
    data = [
        {
            "model_id": stable_id(m.name),
            "name": m.name,
            "description": m.description,
            "size_ids": size_ids(m),
            "sizes": m.sizes,
            "max_number": m.max_images,
            "max_steps": m.max_steps,
            "default_steps": m.default_steps,
            "price": str(m.price),
            "loras": list(m.loras),
        }
        for m in core(request).admission.models()
    ]
    return _ok(data)


@router.get(
    "/api/v1/draw/styles",
    summary="aichat: style_id values",
    dependencies=[Depends(aichat_caller)],
    **documented(AichatStyles),
)
async def list_styles(request: Request) -> JSONResponse:
    data = [
        {
            "style_id": stable_id(s.id),
            "id": s.id,
            "name": s.name,
            "template": s.template,
            "negative_prompt": s.negative_prompt,
        }
        for s in core(request).admission.styles()
    ]
    return _ok(data)


@router.get(
    "/api/v1/draw/samplers",
    summary="aichat: simper values",
    dependencies=[Depends(aichat_caller)],
    **documented(AichatSamplers),
)
async def list_samplers(request: Request) -> JSONResponse:
    return _ok([{"name": n} for n in sampler_names()])
