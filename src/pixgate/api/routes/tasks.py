"""Tasks: any images request made asynchronous, and the owner's view of every request.

Every request is a job, and every job can be read as a task: `POST /v1/images/...` with
`"async": true` (or a `webhook_url`) answers 202 with the task at once; `GET /v1/tasks/{id}`
reports its status and progress and, once it succeeded, the same `data[]` the synchronous
response has. `/v1/jobs` is an alias of the same handlers (the name this API had first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pixgate.accounts.keys import Caller
from pixgate.api.deps import Authenticated, authenticated, core, language, public_base, request_id
from pixgate.api.results import error_object, render_images, render_result
from pixgate.api.schemas import DeliveryList, Task, TaskList, WebhookSecret, documented
from pixgate.core.service import Pixgate
from pixgate.core.views import TaskView, WebhookView
from pixgate.errors import PixgateError, invalid
from pixgate.money import from_minor
from pixgate.queue import webhooks
from pixgate.queue.tasks import TaskOptions
from pixgate.spec.request import GenerationRequest

# Every route needs a key: a forgotten parameter cannot open one.
router = APIRouter(tags=["tasks"], dependencies=[Depends(authenticated)])

ResponseFormat = Literal["url", "b64_json"]
TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class TaskFields(BaseModel):
    """pixgate's extension fields that make any images request asynchronous. The same
    flat fields work in JSON bodies and in multipart forms."""

    async_: bool | None = Field(
        default=None,
        alias="async",
        description="pixgate extension: answer at once with 202 and a task object "
        '(`object: "task"`) instead of waiting for the images; poll `GET /v1/tasks/{id}` '
        "for the result. Default false; implied by `webhook_url`.",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=webhooks.MAX_URL_LENGTH,
        description="pixgate extension: an http(s) URL pixgate POSTs the task object to when "
        "the task finishes (succeeded, failed or cancelled), signed in the "
        "`X-Pixgate-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256(secret, "
        '"<t>.<body>")>`); retried with backoff until it answers 2xx. Implies `async`.',
    )
    webhook_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="pixgate extension: the secret that signs this task's webhook; default: "
        "the account's webhook secret (`GET /v1/webhooks/secret`).",
    )

    def task_options(
        self, response_format: str, base_url: str, webhook_allow: Sequence[str] = ()
    ) -> TaskOptions | None:
        """The task to create, or None for a synchronous request. `webhook_allow`: the
        non-public networks the server lets webhooks reach."""
        if self.webhook_url is None:
            if self.webhook_secret is not None:
                raise invalid(
                    "webhook_secret",
                    "is only used with webhook_url; send webhook_url too",
                    "仅与 webhook_url 一起使用,请同时传 webhook_url",
                )
            return TaskOptions(response_format, base_url) if self.async_ else None
        if self.async_ is False:
            raise PixgateError(
                "conflicting_values",
                param="async",
                args_={"other": "webhook_url", "detail": "a webhook makes the request async"},
            )
        webhooks.check_url(self.webhook_url, "webhook_url", webhook_allow)
        return TaskOptions(response_format, base_url, self.webhook_url, self.webhook_secret)


async def respond(
    request: Request,
    caller: Caller,
    req: GenerationRequest,
    fields: TaskFields,
    response_format: str | None,
) -> JSONResponse:
    """Answer an images request: the images (synchronous), or 202 and the task."""
    app_core = core(request)
    fmt = response_format or "url"
    options = fields.task_options(fmt, public_base(request), app_core.admission.webhook_allow())
    if options is None:
        result = await app_core.tasks.generate(caller, req, request_id(request))
        return JSONResponse(await render_result(request, app_core, result, fmt))
    job_id = await app_core.admission.submit(caller, req, request_id(request), options)
    job = await app_core.tasks.task(caller, job_id)
    task = task_object(app_core, job, public_base(request), fmt, language(request))
    return JSONResponse(task, status_code=202, headers={"Location": task["links"]["self"]})


def task_object(
    app_core: Pixgate, job: TaskView, base: str, fmt: str = "url", lang: str = "en"
) -> dict[str, Any]:
    """The task: status and progress; when succeeded the images (as the synchronous
    response has them), when failed or cancelled the error (OpenAI's error object)."""
    status = job.task_status
    self_url = f"{base}/v1/tasks/{job.id}"
    links = {"self": self_url}
    if not job.finished:
        links["cancel"] = f"{self_url}/cancel"
    task: dict[str, Any] = {
        "id": job.id,
        "object": "task",
        "status": status,
        "progress": round(job.progress, 3),
        "created": int(job.created_at.replace(tzinfo=UTC).timestamp()),
        "model": job.model,
        "kind": job.kind,
        "n": job.n,
        "images_produced": job.n_succeeded,
        "cost": str(from_minor(job.cost_minor)),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "links": links,
        "webhook": _webhook_json(job.webhook),
        "error": None,
    }
    if job.waiting is not None:  # queued, and no live worker serves its model
        task["waiting"] = job.waiting
    if status == "succeeded":
        try:
            images = render_images(app_core, job.result(), fmt, base)
        except (FileNotFoundError, ValueError) as exc:  # swept after the URL lifetime
            ttl = app_core.tasks.url_ttl_seconds()
            raise PixgateError("url_invalid", args_={"ttl": ttl}) from exc
        images.pop("created")
        task.update(images)
    elif status == "cancelled":
        task["error"] = error_object(PixgateError("cancelled", args_={"job": job.id}), lang)
    elif status == "failed":
        task["error"] = error_object(app_core.tasks.job_error(job, job.request_id), lang)
    return task


def _webhook_json(webhook: WebhookView | None) -> dict[str, Any] | None:
    if webhook is None:
        return None
    return {
        "url": webhook.url,
        "status": webhook.status,
        "attempts": webhook.attempts,
        "last_error": webhook.last_error,
        "next_attempt_at": webhook.next_attempt_at.isoformat() if webhook.next_attempt_at else None,
    }


def webhook_renderer(app_core: Pixgate) -> Callable[[TaskView], dict[str, Any]]:
    """What a task's webhook POSTs: the task object, with links under the configured
    public URL or else the base URL the task was submitted to. Images are always URLs
    (a webhook body stays small; GET the task for base64)."""

    def render(job: TaskView) -> dict[str, Any]:
        base = app_core.public_url or job.base_url or ""
        return task_object(app_core, job, base.rstrip("/"), "url")

    return render


# --- the owner's API -------------------------------------------------------------------
@router.get(
    "/v1/tasks",
    summary="The account's tasks (every request), newest first",
    **documented(TaskList),
)
@router.get("/v1/jobs", include_in_schema=False)
async def list_tasks(
    request: Request,
    caller: Authenticated,
    status: TaskStatus | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict:
    app_core = core(request)
    rows = await app_core.tasks.list_tasks(caller, status, limit)
    base, lang = public_base(request), language(request)
    return {"object": "list", "data": [task_object(app_core, j, base, "url", lang) for j in rows]}


@router.get(
    "/v1/tasks/{task_id}", summary="A task's status, progress and result", **documented(Task)
)
@router.get("/v1/jobs/{task_id}", include_in_schema=False)
async def get_task(
    task_id: str,
    request: Request,
    caller: Authenticated,
    response_format: ResponseFormat | None = Query(
        default=None, description="url or b64_json; default: what the request asked for."
    ),
) -> dict:
    app_core = core(request)
    job = await app_core.tasks.task(caller, task_id)
    fmt = response_format or job.response_format or "url"
    # In a worker thread: with b64_json it reads and encodes every image.
    return await asyncio.to_thread(
        task_object, app_core, job, public_base(request), fmt, language(request)
    )


@router.post(
    "/v1/tasks/{task_id}/cancel",
    summary="Cancel a queued or running task (refunded)",
    **documented(Task),
)
@router.post("/v1/jobs/{task_id}/cancel", include_in_schema=False)
async def cancel_task(task_id: str, request: Request, caller: Authenticated) -> dict:
    app_core = core(request)
    job = await app_core.tasks.cancel_task(caller, task_id)
    return task_object(app_core, job, public_base(request), "url", language(request))


@router.get(
    "/v1/tasks/{task_id}/deliveries",
    summary="A task's webhook delivery attempts",
    **documented(DeliveryList),
)
async def list_deliveries(task_id: str, request: Request, caller: Authenticated) -> dict:
    rows = await core(request).tasks.deliveries(caller, task_id)
    return {
        "object": "list",
        "data": [
            {
                "attempt": a.attempt,
                "delivered": a.delivered,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "created_at": a.created_at.isoformat(),
            }
            for a in rows
        ],
    }


@router.get(
    "/v1/webhooks/secret",
    summary="The account's webhook signing secret",
    **documented(WebhookSecret),
)
async def webhook_secret(request: Request, caller: Authenticated) -> dict:
    """Signs the webhooks of tasks that name no `webhook_secret` of their own."""
    return {
        "object": "webhook_secret",
        "secret": core(request).identity.webhook_secret(caller),
        "header": webhooks.SIGNATURE_HEADER,
        "scheme": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
    }
