"""What every channel type's module shares: the call it is given, the images it returns,
the failures it raises, and one `send` that turns transport errors and HTTP statuses into
those failures.

A channel type's module has one coroutine, `generate(call) -> list[UpstreamImage]`: it
translates `call.req` into the upstream's request, sends it with `send`, and returns the
images the upstream made, as bytes (base64 answers) or URLs (the router downloads them
through the SSRF guard). It raises `UpstreamFailure` for anything else, with a `kind` the
router acts on:

- `connect`, `timeout`, `busy` (429, or a business code meaning the same), `server` (5xx),
  `bad_response` (200 but no usable images): the channel failed; try another one;
- `auth` (401/403): the channel's credentials are wrong; it is disabled for the admin;
- `rejected` (any other 4xx): the request itself was refused; not retried, the client gets
  a 400 naming the upstream's message;
- `content` (the upstream refused the prompt or image as unlawful; an HTTP 451 too): a
  451, not retried.

A type whose error bodies say more than the status (a business code, a content refusal)
gives `send` a `refine` function. The helpers at the end (base64, data URIs, OpenAI-shaped
image lists, Bearer headers) are the pieces several types share.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from pixgate.spec.channels import ChannelSpec
from pixgate.spec.request import GenerationRequest

FailureKind = Literal[
    "connect", "timeout", "busy", "server", "bad_response", "auth", "rejected", "content"
]
RETRYABLE: frozenset[str] = frozenset({"connect", "timeout", "busy", "server", "bad_response"})
MESSAGE_LIMIT = 300  # characters of an upstream's message kept in errors and records


class UpstreamFailure(Exception):
    """One upstream call that produced no images; `message` never holds a credential."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message[:MESSAGE_LIMIT]
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class UpstreamImage:
    """One image an upstream made: its bytes, or a URL to download them from."""

    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class Inputs:
    """The request's input images as PNG bytes (read from storage by the backend): the
    image of img2img / inpaint / variation, and the inpainting mask (white = repaint, as
    pixgate stores it; a type whose API wants another convention converts it)."""

    image: bytes | None = None
    mask: bytes | None = None


@dataclass(frozen=True)
class Call:
    """One upstream call: the shared HTTP client (pooled, kept alive), the channel, the
    model's name on the upstream, the request and its input images."""

    http: httpx.AsyncClient
    channel: ChannelSpec
    upstream_model: str
    req: GenerationRequest
    inputs: Inputs

    def url(self, path: str) -> str:
        return self.channel.base_url + path


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (only the delta-seconds form; dates are rare here)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86_400 else None


def upstream_message(response: httpx.Response) -> str:
    """The human part of an error answer: OpenAI's `error.message`, Volcengine's
    `message`, FastAPI's `detail`, else the start of the body."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text[:MESSAGE_LIMIT] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "msg", "error"):
            if body.get(key):
                return str(body[key]) if not isinstance(body[key], str) else body[key]
        meta = body.get("ResponseMetadata")
        if isinstance(meta, dict) and isinstance(meta.get("Error"), dict):
            return str(meta["Error"].get("Message") or meta["Error"])
    return json.dumps(body, ensure_ascii=False)[:MESSAGE_LIMIT]


def failure_for_status(response: httpx.Response) -> UpstreamFailure | None:
    """The failure an HTTP status means, or None for 2xx (the type reads the body)."""
    status = response.status_code
    if status < 300:
        return None
    message = f"HTTP {status}: {upstream_message(response)}"
    if status == 429:
        return UpstreamFailure(
            "busy", message, status, retry_after_seconds(response.headers.get("retry-after"))
        )
    if status >= 500:
        return UpstreamFailure(
            "server", message, status, retry_after_seconds(response.headers.get("retry-after"))
        )
    if status in (401, 403):
        return UpstreamFailure("auth", message, status)
    if status == 451:  # Unavailable For Legal Reasons: pixgate's (and Yuecheng's) refusal
        return UpstreamFailure("content", message, status)
    if status == 408:
        return UpstreamFailure("timeout", message, status)
    return UpstreamFailure("rejected", message, status)


Refine = Callable[[httpx.Response], UpstreamFailure | None]


def with_overrides(call: Call, headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the channel's header overrides on top, names compared without case
    (an override of `content-type` replaces `Content-Type`)."""
    overrides = call.channel.headers
    lowered = {name.lower() for name in overrides}
    return {
        **{k: v for k, v in headers.items() if k.lower() not in lowered},
        **overrides,
    }


def redacted(call: Call, failure: UpstreamFailure) -> UpstreamFailure:
    """`failure` with every credential of the channel blanked from its message (an upstream
    may echo one back)."""
    message = failure.message
    for secret in call.channel.secrets():
        message = message.replace(secret, "***")
    if message == failure.message:
        return failure
    return UpstreamFailure(failure.kind, message, failure.status, failure.retry_after)


async def send(
    call: Call, method: str, path: str, *, refine: Refine | None = None, **kwargs: Any
) -> httpx.Response:
    """Send one request to the channel (its base URL + `path`, its header overrides on top
    of `headers`, its timeout) and return a 2xx response; raise UpstreamFailure for a
    transport error or any other status. `refine`, when given, is asked first about a
    non-2xx answer (a type whose error bodies say more than the status, e.g. a business
    code or a content refusal); None from it leaves the status to decide. Credentials are
    blanked from every failure's message."""
    headers = with_overrides(call, kwargs.pop("headers", {}))
    try:
        response = await call.http.request(
            method,
            call.url(path),
            headers=headers,
            timeout=call.channel.timeout_seconds,
            **kwargs,
        )
    except httpx.TimeoutException as exc:
        raise UpstreamFailure(
            "timeout", f"no answer within {call.channel.timeout_seconds:g} s"
        ) from exc
    except httpx.TransportError as exc:  # refused, reset, DNS, TLS
        raise redacted(call, UpstreamFailure("connect", f"{type(exc).__name__}: {exc}")) from exc
    if response.status_code < 300:
        return response
    failure = (refine(response) if refine else None) or failure_for_status(response)
    if failure is not None:
        raise redacted(call, failure)
    return response


def error_body(response: httpx.Response) -> Any:
    """An error answer's JSON, or None when it has none."""
    try:
        return json_body(response)
    except UpstreamFailure:
        return None


def error_code(response: httpx.Response) -> Any:
    """`error.code` of an OpenAI-shaped error answer (OpenAI's, Ark's), or None."""
    body = error_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def json_body(response: httpx.Response) -> Any:
    """A 2xx answer's JSON, or a `bad_response` failure."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise UpstreamFailure(
            "bad_response", f"HTTP {response.status_code} answer is not JSON"
        ) from exc


async def one_per_call(
    call: Call, one: Callable[[int], Awaitable[list[UpstreamImage]]]
) -> list[UpstreamImage]:
    """For APIs that make one image per call: `n` calls at once, image i with seed + i.
    Some failing is a partial success (the images that came); all failing raises the
    first call's failure."""
    results = await asyncio.gather(
        *(one(seed) for seed in call.req.image_seeds()), return_exceptions=True
    )
    images: list[UpstreamImage] = []
    failures: list[BaseException] = []
    for result in results:
        if isinstance(result, BaseException):
            failures.append(result)
        else:
            images.extend(result)
    if not images and failures:
        raise failures[0]
    return images


# --- pieces the types share ----------------------------------------------------------------
def require_kind(call: Call) -> None:
    """Refuse a request kind the channel's type cannot do (TYPE_INFO says which)."""
    if call.req.kind not in call.channel.info.kinds:
        raise UpstreamFailure(
            "rejected", f"a {call.channel.type} channel cannot do {call.req.kind} requests"
        )


def input_image(call: Call) -> bytes:
    """The request's input image (img2img, inpaint, variation)."""
    if call.inputs.image is None:
        raise UpstreamFailure("rejected", f"a {call.req.kind} request needs an input image")
    return call.inputs.image


def bearer(call: Call) -> dict[str, str]:
    """`Authorization: Bearer <api_key>`, or nothing for a channel without a key."""
    key = call.channel.secret("api_key")
    return {"Authorization": f"Bearer {key}"} if key else {}


def size(call: Call) -> str:
    """The request's size as `WIDTHxHEIGHT`."""
    return f"{call.req.width}x{call.req.height}"


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_uri(png: bytes) -> str:
    """A PNG as `data:image/png;base64,...` (how JSON APIs take an input image)."""
    return "data:image/png;base64," + b64encode(png)


def b64decode(text: Any) -> bytes:
    """An upstream's base64 image (a data URI's prefix is dropped), or `bad_response`."""
    if not isinstance(text, str) or not text:
        raise UpstreamFailure("bad_response", "an image in the answer is not a base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamFailure("bad_response", "an image in the answer is not valid base64") from exc


def listed_images(body: Any, where: str) -> list[UpstreamImage]:
    """Images from an answer's OpenAI-shaped list `body[where]` (`[{"b64_json": ...} |
    {"url": ...}]`); an empty or missing list, or an entry with neither, is `bad_response`."""
    items = body.get(where) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise UpstreamFailure("bad_response", f"the answer has no images ({where} is empty)")
    images: list[UpstreamImage] = []
    for item in items:
        if isinstance(item, dict) and item.get("b64_json"):
            images.append(UpstreamImage(data=b64decode(item["b64_json"])))
        elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
            images.append(UpstreamImage(url=item["url"]))
        else:
            raise UpstreamFailure("bad_response", f"an entry of {where} has no b64_json or url")
    return images


def without_defaults(body: dict[str, Any], req: GenerationRequest, keys: dict[str, str]) -> dict:
    """`body` without the upstream fields (`keys`: pixgate field -> upstream key) whose
    value pixgate filled in as a default: the upstream's own default applies instead, as it
    would for a client calling it directly."""
    for field_name, key in keys.items():
        if field_name in req.defaulted:
            body.pop(key, None)
    return body
