"""Response models of the OpenAI-shaped API, the task API, accounts, admin and operations.

They document what the handlers return, so `/openapi.json` says it and clients and
fuzzers can rely on it. They never serialize at runtime: handlers build their dicts (whose
bytes the tests pin) and routes take these through `documented()`, which FastAPI puts in
the schema only. A field added to a response belongs here too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def documented(
    model: type[BaseModel],
    description: str = "Successful Response",
    also: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Route keywords that document `model` as the 200 response without FastAPI ever
    validating or re-serializing what the handler returns. `also`: other statuses, e.g.
    `ASYNC_TASK` (202 and the task)."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {"model": model, "description": description},
        **(also or {}),
    }
    return {"response_model": None, "responses": responses}


# Request bodies the routes read themselves (so that they can cap them while they stream)
# are documented through `openapi_extra`; their schemas live here until the app's
# OpenAPI document is built, which adds them to `components/schemas`.
_REF = "#/components/schemas/{model}"
_REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {}


def request_body(
    model: type[BaseModel], files: tuple[str, ...] = (), name: str | None = None
) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the JSON body, or with `files` as the
    multipart form whose other fields `model` validates (registered as `name`)."""
    schema = model.model_json_schema(ref_template=_REF)
    _REQUEST_SCHEMAS.update(schema.pop("$defs", {}))
    media = "application/json"
    if files:
        media = "multipart/form-data"
        binary = {"type": "string", "format": "binary"}
        schema["properties"] = {**dict.fromkeys(files, binary), **schema["properties"]}
        schema["required"] = [files[0], *schema.get("required", [])]
    name = name or model.__name__
    _REQUEST_SCHEMAS[name] = schema
    ref = {"$ref": _REF.format(model=name)}
    return {"requestBody": {"required": True, "content": {media: {"schema": ref}}}}


def add_request_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI document with the request bodies' schemas in its components."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _REQUEST_SCHEMAS.items():
        components.setdefault(name, schema)
    return document


class ListOf(BaseModel):
    object: Literal["list"] = "list"


# --- images -------------------------------------------------------------------------------
class ImageDatum(BaseModel):
    """One image: `url` (response_format url) or `b64_json`."""

    url: str | None = Field(default=None, description="Signed, expiring link.")
    b64_json: str | None = Field(default=None, description="The image file, base64.")
    revised_prompt: str | None = Field(
        default=None, description="The prompt generated from, when prompt_enhancement rewrote it."
    )


class ImageUrl(BaseModel):
    url: str


class Timings(BaseModel):
    inference: float = Field(description="Seconds spent generating.")


class ImagesResponse(BaseModel):
    """OpenAI's `data[]` and SiliconFlow's `images[]` in one response (seed 001)."""

    created: int
    data: list[ImageDatum]
    images: list[ImageUrl]
    timings: Timings
    seed: int
    output_format: str | None
    revised_prompt: str | None = Field(
        default=None, description="The rewritten prompt (prompt_enhancement)."
    )
    rewriter: str | None = Field(
        default=None, description="What rewrote it: llm (the [rewriter]) or offline."
    )
    upscaler: str | None = Field(
        default=None, description="What upscaled (use_sr/upscale): lanczos or the SR network."
    )


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class TaskLinks(BaseModel):
    self: str
    cancel: str | None = Field(default=None, description="Only while the task can be cancelled.")


class WebhookState(BaseModel):
    url: str
    status: str | None
    attempts: int | None
    last_error: str | None
    next_attempt_at: str | None


class Task(BaseModel):
    """Any request read as a task; once succeeded it carries the images response's fields
    (without `created`)."""

    id: str
    object: Literal["task"] = "task"
    status: TaskStatus
    progress: float
    created: int
    model: str
    kind: str
    n: int
    images_produced: int
    cost: str
    created_at: str
    finished_at: str | None
    links: TaskLinks
    webhook: WebhookState | None
    error: ErrorObject | None
    waiting: str | None = Field(
        default=None,
        description="Only while queued with no live worker serving the model: "
        "`waiting: no live worker serves model X` (it fails, free, after the generation "
        "timeout unless a worker for it starts).",
    )
    data: list[ImageDatum] | None = None
    images: list[ImageUrl] | None = None
    timings: Timings | None = None
    seed: int | None = None
    output_format: str | None = None


class TaskList(ListOf):
    data: list[Task]


class Delivery(BaseModel):
    attempt: int
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int | None
    created_at: str


class DeliveryList(ListOf):
    data: list[Delivery]


class WebhookSecret(BaseModel):
    object: Literal["webhook_secret"] = "webhook_secret"
    secret: str
    header: str
    scheme: str


ASYNC_TASK = {202: {"model": Task, "description": "`async` or `webhook_url`: the task."}}


# --- catalog ------------------------------------------------------------------------------
class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    source: str
    demo: bool
    random_weights: bool
    description: str
    price: str = Field(description="Currency per image, as a decimal string.")
    sizes: list[str]
    size_range: list[int] | None
    flow_match: bool
    default_size: str
    max_images: int
    max_steps: int


class ModelList(ListOf):
    data: list[ModelInfo]


class SamplerName(BaseModel):
    name: str


class SamplerList(ListOf):
    data: list[SamplerName]
    flow_match: list[str] = Field(description="The names flow-matching models accept.")


class StyleInfo(BaseModel):
    id: str
    name: str
    template: str
    negative_prompt: str


class StyleList(ListOf):
    data: list[StyleInfo]


class LoraInfo(BaseModel):
    name: str
    description: str | None
    default_scale: float
    models: list[str]


class LoraList(ListOf):
    data: list[LoraInfo]


# --- account ------------------------------------------------------------------------------
class KeyUsage(BaseModel):
    display: str
    image_cap: int | None
    used_images: int
    remaining_images: int | None
    remaining_images_model: str


class CreditSummary(BaseModel):
    object: Literal["credit_summary"] = "credit_summary"
    currency: str
    total_granted: str
    total_used: str
    total_available: str
    plan: str
    key: KeyUsage


class UsageRow(BaseModel):
    group: str
    requests: int
    images: int
    cost: str


class UsageList(ListOf):
    group_by: Literal["key", "model", "day"]
    start: str
    end: str
    currency: str
    data: list[UsageRow]


class Redeemed(BaseModel):
    credited: str
    balance: str
    currency: str


# --- admin --------------------------------------------------------------------------------
class UserInfo(BaseModel):
    id: str
    name: str
    role: str
    plan: str | None
    enabled: bool
    balance: str
    created_at: str


class UserList(ListOf):
    data: list[UserInfo]


class Balance(BaseModel):
    user: str
    balance: str


class KeyInfo(BaseModel):
    id: str
    user_id: str
    display: str
    name: str | None
    image_cap: int | None
    images_used: int
    enabled: bool
    expires_at: str | None
    allowed_models: list[str] | None
    allowed_ips: list[str] | None
    has_signing_secret: bool
    explicit_label: bool | None = Field(
        description="This key's explicit-label override; null: the deployment's setting."
    )


class KeyList(ListOf):
    data: list[KeyInfo]


class NewKey(BaseModel):
    id: str
    key: str = Field(description="The key itself, shown only here.")
    display: str
    user_id: str
    signing_secret: str | None


class MintedCodes(BaseModel):
    batch: str
    value: str
    codes: list[str]


class LedgerRow(BaseModel):
    id: int | str
    user_id: str
    kind: str
    amount: str
    job_id: str | None
    key_id: str | None
    reason: str | None
    actor: str | None
    created_at: str


class LedgerList(ListOf):
    data: list[LedgerRow]


class JobRow(BaseModel):
    id: str
    user_id: str
    key_id: str | None
    model: str
    status: str
    n: int
    n_succeeded: int
    seed: int | None
    cost: str
    error_code: str | None
    created_at: str
    finished_at: str | None
    channel: str | None = Field(default=None, description="Relayed jobs: the channel used.")
    upstream_cost: str = Field(default="0", description="What the upstream charged for it.")


class JobList(ListOf):
    data: list[JobRow]


class UpstreamCall(BaseModel):
    channel: str
    outcome: str = Field(description="ok, or connect, timeout, busy, server, bad_response, ...")
    http_status: int | None
    latency_ms: int
    images: int
    cost: str
    error: str | None


class JobDetail(JobRow):
    error_message: str | None
    inference_seconds: float | None
    upstream_calls: list[UpstreamCall]


class AuditReport(BaseModel):
    ok: bool
    problems: list[str]


# --- operations ---------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class Links(BaseModel):
    docs: str
    openapi: str
    models: str
    health: str


class ServiceInfo(BaseModel):
    name: str
    version: str
    links: Links
