"""Volcengine's visual API (Jimeng, seed 002), as a channel: `POST {base_url}/?Action=
CVProcess&Version=2022-08-31`, JSON {req_key (= the model's upstream name), prompt, seed,
scale (guidance), ddim_steps (steps), width, height, return_url false, use_pre_llm false,
use_sr false, and for img2img `binary_data_base64: [the input]`}, signed with Volcengine's
HMAC-SHA256 V4 (`pixgate.volc_v4`: the channel's access_key, secret_key, region, service).

One image per call (CVProcess makes one), so n images are n calls at once, image i with
seed + i. `use_pre_llm` (the upstream rewriting the prompt) and `use_sr` (the upstream
doubling the size) default to on upstream and are sent off: pixgate does its own prompt
enhancement and upscaling, and the image must be the size the request asked for.

Answers: `{code, message, data: {binary_data_base64: [...], image_urls: [...]}}`, code 10000
on success. Volcengine sends business errors with an HTTP 4xx/5xx *and* a code, and the
code decides: 50411/50412/50413/50511 (an input image, the text, the drawn text or the
output refused) -> content; 50429/50430 (QPS or concurrency limit) -> busy; 50400 (Access
Denied: the account may not use the service) -> auth; 505xx -> server; any other ->
rejected with the message. Its gateway's refusals (`ResponseMetadata.Error`: a bad
signature, an unknown access key) follow the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from pixgate import volc_v4
from pixgate.backends.relay.apis.base import (
    Call,
    UpstreamFailure,
    UpstreamImage,
    b64decode,
    b64encode,
    error_body,
    failure_for_status,
    input_image,
    json_body,
    one_per_call,
    redacted,
    require_kind,
    retry_after_seconds,
    send,
    upstream_message,
    with_overrides,
    without_defaults,
)

QUERY = "?Action=CVProcess&Version=2022-08-31"
SUCCESS = 10000
CONTENT_CODES = frozenset({50411, 50412, 50413, 50511})
BUSY_CODES = frozenset({50429, 50430})
ACCESS_DENIED = 50400


def path(call: Call) -> str:
    """`/?Action=...` on a bare host; `?Action=...` after a base URL with a path (a relay's
    `https://relay.example/volcv`)."""
    return QUERY if urlsplit(call.channel.base_url).path not in ("", "/") else "/" + QUERY


def business_failure(body: Any, response: httpx.Response) -> UpstreamFailure | None:
    """The failure a body's business code means; None for 10000 or a body without one."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code == SUCCESS:
        return None
    message = f"code {code}: {body.get('message') or 'no message'}"
    status = response.status_code
    if code in CONTENT_CODES:
        return UpstreamFailure("content", message, status)
    if code in BUSY_CODES:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        return UpstreamFailure("busy", message, status, retry)
    if code == ACCESS_DENIED:
        return UpstreamFailure("auth", message, status)
    if 50500 <= code <= 50599:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        return UpstreamFailure("server", message, status, retry)
    return UpstreamFailure("rejected", message, status)


def _refine(response: httpx.Response) -> UpstreamFailure | None:
    """A business code decides; a gateway refusal keeps its status's kind and names its
    Error.Code (SignatureDoesNotMatch, InvalidAccessKey, ...) for the admin."""
    body = error_body(response)
    failure = business_failure(body, response)
    meta = body.get("ResponseMetadata") if isinstance(body, dict) else None
    error = meta.get("Error") if isinstance(meta, dict) else None
    by_status = failure_for_status(response)
    if failure is None and isinstance(error, dict) and error.get("Code") and by_status:
        message = f"{error['Code']}: {upstream_message(response)}"
        return UpstreamFailure(by_status.kind, message, by_status.status, by_status.retry_after)
    return failure


def payload(call: Call, seed: int, image_b64: str | None) -> dict[str, Any]:
    req = call.req
    body: dict[str, Any] = {
        "req_key": call.upstream_model,
        "prompt": req.prompt,
        "seed": seed,
        "scale": req.guidance,
        "ddim_steps": req.steps,
        "width": req.width,
        "height": req.height,
        "use_pre_llm": False,
        "use_sr": False,
        "return_url": False,
    }
    if image_b64 is not None:
        body["binary_data_base64"] = [image_b64]
    return without_defaults(body, req, {"steps": "ddim_steps", "guidance": "scale"})


def signed_headers(call: Call, target: str, content: bytes) -> dict[str, str]:
    """The headers of one call, the channel's overrides included (they are signed too)."""
    channel = call.channel
    return volc_v4.sign(
        "POST",
        call.url(target),
        with_overrides(call, {"Content-Type": "application/json"}),
        content,
        access_key=channel.secret("access_key") or "",
        secret_key=channel.secret("secret_key") or "",
        region=channel.region,
        service=channel.service,
    )


def images_of(call: Call, body: Any, response: httpx.Response) -> list[UpstreamImage]:
    failure = business_failure(body, response)
    if failure is not None:
        raise redacted(call, failure)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise UpstreamFailure("bad_response", "the answer has no data object")
    encoded, urls = data.get("binary_data_base64"), data.get("image_urls")
    if isinstance(encoded, list) and encoded:
        return [UpstreamImage(data=b64decode(item)) for item in encoded]
    if isinstance(urls, list) and urls and all(isinstance(u, str) and u for u in urls):
        return [UpstreamImage(url=url) for url in urls]
    raise UpstreamFailure("bad_response", "the answer has no images (data is empty)")


async def generate(call: Call) -> list[UpstreamImage]:
    require_kind(call)
    image_b64 = b64encode(input_image(call)) if call.req.kind == "img2img" else None
    target = path(call)

    async def one(seed: int) -> list[UpstreamImage]:
        content = json.dumps(payload(call, seed, image_b64), ensure_ascii=False).encode()
        response = await send(
            call,
            "POST",
            target,
            content=content,
            headers=signed_headers(call, target, content),
            refine=_refine,
        )
        return images_of(call, json_body(response), response)[:1]

    return await one_per_call(call, one)
