"""Volcengine / Jimeng visual API (seed 002): `CVProcess` (synchronous text-to-image) and
the asynchronous pair `CVSync2AsyncSubmitTask` / `CVSync2AsyncGetResult`, at `POST /volcv`
(the relay's path in the seed) and at `POST /` (Volcengine's own, so the official SDK works
with only its host changed). `req_key` names the model; task ids are job ids.

Callers authenticate with a Bearer key (as the seed's relay does) or with Volcengine's
HMAC-SHA256 request signature, whose access key is a pixgate key's id and secret key that
key's signing secret (`pixgate keys create --signing`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pixgate.accounts.keys import Caller
from pixgate.api.bodies import load_json, parse_json_object, read_capped
from pixgate.api.deps import (
    bearer_token,
    client_ip,
    core,
    dialect,
    language,
    public_base,
    request_id,
)
from pixgate.api.dialects import volc_signing
from pixgate.api.dialects.volcengine_render import (
    GatewayError,
    VolcContext,
    render_error,
    render_gateway_error,
    success,
)
from pixgate.api.results import content_notes, image_urls, images_base64_async
from pixgate.api.schemas import documented, request_body
from pixgate.api.schemas_dialects import VolcResponse
from pixgate.api.validation import validate
from pixgate.core.service import GenerationResult, Pixgate
from pixgate.core.shaping import FieldNames, shape_request
from pixgate.errors import PixgateError, invalid
from pixgate.queue.tasks import TaskOptions
from pixgate.spec.request import MAX_SEED, GenerationRequest, Watermark

log = structlog.get_logger("pixgate.volcengine")

router = APIRouter(tags=["Volcengine / Jimeng (CVProcess)"], dependencies=[dialect("volcengine")])

PATH_PREFIXES = ("/volcv",)
VERSION = "2022-08-31"
GRID = 8  # images are made on the latent grid; other widths and heights are rounded to it

LOGO_POSITIONS = ("bottom-right", "bottom-left", "top-left", "top-right")
LOGO_TEXTS = ("AI生成", "AI generated")  # by `language`: 0 Chinese, 1 English
# req_key -> the model_version it serves (for req_keys pixgate knows; others accept any)
MODEL_VERSIONS = {
    "high_aes_general_v21_L": "general_v2.1_L",
    "jimeng_high_aes_general_v21_L": "general_v2.1_L",
}
SCHEDULE_CONFS = ("general_v20_9B_pe", "general_v20_9B_rephraser")
NAMES = FieldNames(size="width", n="n", steps="ddim_steps", guidance="scale")
# pixgate field -> this dialect's field, for the ones it fills with its own default
DEFAULTED = {"guidance": "scale", "steps": "ddim_steps"}


class LogoInfo(BaseModel):
    """`logo_info`: the visible mark drawn on the image."""

    model_config = ConfigDict(extra="forbid", strict=True)

    add_logo: bool = Field(default=False, description="Draw the mark.")
    position: int = Field(
        default=0, ge=0, le=3, description="0 bottom-right, 1 bottom-left, 2 top-left, 3 top-right."
    )
    language: int = Field(
        default=0, ge=0, le=1, description="0 Chinese ('AI生成'), 1 English ('AI generated')."
    )
    opacity: float = Field(default=0.3, ge=0, le=1)
    logo_text_content: str | None = Field(
        default=None, max_length=100, description="Custom text instead of the default mark."
    )

    def watermark(self) -> Watermark | None:
        if not self.add_logo:
            return None
        text = (self.logo_text_content or "").strip() or LOGO_TEXTS[self.language]
        return Watermark(text=text, position=LOGO_POSITIONS[self.position], opacity=self.opacity)


class GenerateFields(BaseModel):
    """The body of `CVProcess` (seed 002) and of `CVSync2AsyncSubmitTask`. Strict, as all
    of this dialect's bodies: the seed sends JSON numbers and booleans (`"seed": -1`,
    `"use_sr": true`); `"seed": "5"` or `"return_url": "yes"` are 400s."""

    model_config = ConfigDict(extra="forbid", strict=True)

    req_key: str = Field(
        min_length=1, max_length=200, description="The model, e.g. high_aes_general_v21_L."
    )
    prompt: str = Field(min_length=1, max_length=800)
    model_version: str | None = Field(default=None, max_length=64)
    req_schedule_conf: str | None = Field(default=None, max_length=64)
    llm_seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1: random.")
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1: random.")
    scale: float = Field(default=3.5, ge=1, le=10, description="Guidance scale.")
    ddim_steps: int = Field(default=25, ge=1, le=200)
    width: int = Field(default=512, ge=256, le=768)
    height: int = Field(default=512, ge=256, le=768)
    use_pre_llm: bool = Field(default=True, description="Prompt enhancement.")
    use_sr: bool = Field(default=True, description="Super-resolution: twice the size.")
    return_url: bool = Field(default=True, description="Also return image links.")
    logo_info: Any = Field(
        default=None,
        description="{add_logo, position 0-3, language 0/1, opacity 0-1, logo_text_content}: "
        "a visible mark (see LogoInfo).",
    )


class GetResultFields(BaseModel):
    """The body of `CVSync2AsyncGetResult`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    req_key: str = Field(min_length=1, max_length=200)
    task_id: str = Field(min_length=1, max_length=64)
    req_json: str | dict[str, Any] | None = Field(
        default=None, description="JSON (a string) with return_url and logo_info."
    )


class ResultOptions(BaseModel):
    """`req_json` of `CVSync2AsyncGetResult`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    return_url: bool | None = None
    logo_info: Any = None


def _nested(model: type[BaseModel], value: Any, name: str) -> Any:
    """Validate a nested object, naming its fields `name.field` in errors."""
    if not isinstance(value, dict):
        raise invalid(name, "must be a JSON object", "必须是 JSON 对象")
    try:
        return validate(model, value)
    except PixgateError as err:
        err.param = f"{name}.{err.param}" if err.param else name
        raise


def _logo(value: Any, name: str = "logo_info") -> LogoInfo | None:
    return None if value is None else _nested(LogoInfo, value, name)


def _on_grid(value: int) -> int:
    return (value + GRID // 2) // GRID * GRID  # halves round up: 260 -> 264


def to_request(app_core: Pixgate, fields: GenerateFields) -> GenerationRequest:
    """The internal request: `req_key` -> model, `ddim_steps` -> steps, `scale` -> guidance,
    `use_pre_llm` -> prompt enhancement, `use_sr` -> 2x upscale, `logo_info` -> watermark."""
    spec = app_core.admission.find_model(fields.req_key)
    if spec is None:
        known = ", ".join(app_core.admission.model_names())
        raise invalid(
            "req_key",
            f"unknown req_key {fields.req_key!r}; available: {known}",
            f"未知 req_key {fields.req_key!r};可选:{known}",
        )
    served = MODEL_VERSIONS.get(spec.name)
    if fields.model_version is not None and served and fields.model_version != served:
        raise invalid(
            "model_version",
            f"req_key {spec.name} serves model_version {served!r}",
            f"req_key {spec.name} 的 model_version 为 {served!r}",
        )
    if fields.req_schedule_conf is not None and fields.req_schedule_conf not in SCHEDULE_CONFS:
        allowed = " or ".join(repr(c) for c in SCHEDULE_CONFS)
        raise invalid("req_schedule_conf", f"must be {allowed}", f"必须是 {allowed}")
    logo = _logo(fields.logo_info)
    return shape_request(
        spec,
        prompt=fields.prompt,
        size=f"{_on_grid(fields.width)}x{_on_grid(fields.height)}",
        n=1,
        steps=fields.ddim_steps,
        guidance=fields.scale,
        seed=None if fields.seed == -1 else fields.seed,
        prompt_enhancement=fields.use_pre_llm,
        llm_seed=None if fields.llm_seed == -1 else fields.llm_seed,
        upscale=2 if fields.use_sr else 1,
        watermark=logo.watermark() if logo else None,
        names=NAMES,
        defaulted=[f for f, own in DEFAULTED.items() if own not in fields.model_fields_set],
    )


async def images_data(
    request: Request, app_core: Pixgate, result: GenerationResult, return_url: bool
) -> dict[str, Any]:
    """CVProcess's `data`: every image as base64, and as links when asked; pixgate adds
    `upscaler` (what ran for `use_sr`) and `rewriter` (what wrote `rephraser_result`)."""
    urls = image_urls(app_core, result, public_base(request)) if return_url else None
    return {
        "algorithm_base_resp": {"status_code": 0, "status_message": "Success"},
        "binary_data_base64": await images_base64_async(app_core, result),
        "image_urls": urls,
        "pe_result": "",
        "predict_tags_result": "",
        "rephraser_result": result.prompt,
        "request_id": request_id(request) or "",
    } | {k: v for k, v in content_notes(result).items() if k != "revised_prompt"}


# --- actions -------------------------------------------------------------------------------
Action = Callable[[Request, Caller, dict[str, Any], VolcContext], Awaitable[JSONResponse]]


async def cv_process(
    request: Request, caller: Caller, body: dict[str, Any], ctx: VolcContext
) -> JSONResponse:
    app_core = core(request)
    fields = validate(GenerateFields, body)
    req = to_request(app_core, fields)
    result = await app_core.tasks.generate(caller, req, ctx.request_id)
    return success(ctx, await images_data(request, app_core, result, fields.return_url))


async def submit_task(
    request: Request, caller: Caller, body: dict[str, Any], ctx: VolcContext
) -> JSONResponse:
    app_core = core(request)
    fields = validate(GenerateFields, body)
    req = to_request(app_core, fields)
    # return_url rides on the job: GetResult's default when its req_json does not say
    task = TaskOptions("url" if fields.return_url else "b64_json", public_base(request))
    job_id = await app_core.admission.submit(caller, req, ctx.request_id, task)
    return success(ctx, {"task_id": job_id})


def _task_data(status: str, **more: Any) -> dict[str, Any]:
    return {"status": status, "binary_data_base64": None, "image_urls": None, **more}


async def get_result(
    request: Request, caller: Caller, body: dict[str, Any], ctx: VolcContext
) -> JSONResponse:
    app_core = core(request)
    fields = validate(GetResultFields, body)
    raw = fields.req_json
    if isinstance(raw, str) and raw.strip():
        raw = load_json(raw, "req_json")
    options = _nested(ResultOptions, raw or {}, "req_json")
    logo = _logo(options.logo_info, "req_json.logo_info")
    try:
        job = await app_core.tasks.task(caller, fields.task_id)
    except PixgateError as err:
        if err.code != "job_not_found":
            raise
        return success(ctx, _task_data("not_found"))
    if job.model != fields.req_key:  # another model's task is not this req_key's
        return success(ctx, _task_data("not_found"))
    if job.status in ("queued", "running"):
        return success(ctx, _task_data("in_queue" if job.status == "queued" else "generating"))
    if job.status != "succeeded":
        err = app_core.tasks.job_error(job, ctx.request_id)
        return render_error(err, language(request), ctx, _task_data("done"))
    result = job.result()
    if result.images and all(i.expires < time.time() for i in result.images):
        return success(ctx, _task_data("expired"))
    mark = logo.watermark() if logo else None
    if mark is not None:
        result = await app_core.tasks.marked_copy(caller, result, mark)
    stored = (job.response_format or "url") == "url"
    return_url = options.return_url if options.return_url is not None else stored
    data = await images_data(request, app_core, result, return_url)
    return success(ctx, {"status": "done", **data})


ACTIONS: dict[str, Action] = {
    "CVProcess": cv_process,
    "CVSync2AsyncSubmitTask": submit_task,
    "CVSync2AsyncGetResult": get_result,
}


# --- authentication ------------------------------------------------------------------------
async def authenticate(request: Request, ctx: VolcContext) -> tuple[Caller, bytes]:
    """A Bearer key, or a Volcengine V4 signature by a key's id and signing secret, and
    the body. A bad, stale or replayed signature counts as a failed authentication of the
    client's IP. The key is checked from the headers before the body is read (capped
    while it streams), so a stranger's upload is refused unread; only a signature by a
    known key needs the body to be verified."""
    identity = core(request).identity
    ip = client_ip(request)
    header = request.headers.get("authorization")
    if not volc_signing.is_signed(header):
        caller = await identity.authenticate(bearer_token(request), ip)
        return caller, await read_capped(request)
    try:
        credential = volc_signing.parse_authorization(header or "")
    except PixgateError:
        await identity.signature_failed(ip)
        raise
    ctx.service, ctx.region = credential.service, credential.region
    signed = await identity.authenticate_signed(credential.access_key, ip)
    body = await read_capped(request)
    try:
        if signed.secret is None:
            raise PixgateError("signing_not_enabled", args_={"key": credential.access_key})
        signed_at = volc_signing.check_date(
            request.headers.get("x-date"), credential, datetime.now(UTC)
        )
        volc_signing.verify(
            credential,
            signed.secret,
            method=request.method,
            path=request.url.path,
            raw_query=request.url.query,
            headers=request.headers,
            body=body,
        )
        # remembered until its X-Date is refused anyway, so it can never be used twice
        ttl = signed_at.timestamp() + volc_signing.MAX_SKEW_SECONDS - time.time()
        token = f"{credential.access_key}:{credential.signature}"
        if not await identity.first_use_of_signature(token, ttl):
            raise PixgateError("signature_replayed")
    except PixgateError:
        await identity.signature_failed(ip)
        raise
    return signed.caller, body


# --- routes --------------------------------------------------------------------------------
def resolve_action(request: Request, ctx: VolcContext, lenient: bool) -> Action:
    """`Action` and `Version` from the query. On /volcv they default to CVProcess and
    2022-08-31 (the seed's relay fixes them; its sample leaves them empty)."""
    params = request.query_params
    ctx.action = params.get("Action") or ("CVProcess" if lenient else "")
    ctx.version = params.get("Version") or (VERSION if lenient else "")
    for name, value in (("Action", ctx.action), ("Version", ctx.version)):
        if not value:
            message = f"The request is missing {name} parameter."
            raise GatewayError("MissingParameter", 100002, 400, message)
    if ctx.action not in ACTIONS or ctx.version != VERSION:
        message = f"Could not find operation {ctx.action} for version {ctx.version}."
        raise GatewayError("InvalidActionOrVersion", 100008, 404, message)
    return ACTIONS[ctx.action]


async def handle(request: Request, lenient: bool) -> JSONResponse:
    ctx = VolcContext(request_id=request_id(request) or "")
    try:
        action = resolve_action(request, ctx, lenient)
        caller, raw = await authenticate(request, ctx)
        return await action(request, caller, parse_json_object(raw), ctx)
    except GatewayError as err:
        return render_gateway_error(err, ctx)
    except PixgateError as err:
        return render_error(err, language(request), ctx)
    except Exception:  # "/" is shared with other APIs: answer in Volcengine's shape here
        log.exception("volcengine request failed")
        err = PixgateError("internal_error", args_={"request_id": ctx.request_id})
        return render_error(err, language(request), ctx)


_DOC = {
    "parameters": [
        {"name": "Action", "in": "query", "schema": {"enum": list(ACTIONS)}},
        {"name": "Version", "in": "query", "schema": {"enum": [VERSION]}},
    ],
    **request_body(GenerateFields),
}


@router.post(
    "/volcv",
    summary="Volcengine: CVProcess and the async pair",
    openapi_extra=_DOC,
    **documented(VolcResponse),
)
async def volcv(request: Request) -> JSONResponse:
    return await handle(request, lenient=True)


@router.post(
    "/",
    summary="Volcengine: the API's own path (official SDKs)",
    openapi_extra=_DOC,
    **documented(VolcResponse),
)
async def volc_root(request: Request) -> JSONResponse:
    return await handle(request, lenient=False)
