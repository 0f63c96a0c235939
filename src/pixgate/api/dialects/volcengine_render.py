"""Volcengine's two response shapes (seed 002) and which internal error takes which.

- The service layer: `{code, data, message, request_id, status, time_elapsed}`, `code`
  10000 on success and a business code on failure (50412 refused text, 50429 QPS limit,
  50430 concurrency limit, 50500 internal error, ...).
- The gateway layer: `{"ResponseMetadata": {RequestId, Action, Version, Service, Region,
  Error: {Code, CodeN, Message}}}` for what Volcengine's API gateway refuses before the
  service sees a request: authentication, signatures, unknown actions, bad parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi.responses import JSONResponse

from pixgate.errors import PixgateError

SUCCESS = 10000
SERVICE = "cv"
REGION = "cn-north-1"


@dataclass
class VolcContext:
    """What every response of one request repeats: its ids and when it started."""

    request_id: str
    action: str = ""
    version: str = ""
    service: str = SERVICE
    region: str = REGION
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> str:
        return go_duration(time.perf_counter() - self.started)


def go_duration(seconds: float) -> str:
    """Seconds as Go's `time.Duration` prints them, as Volcengine's `time_elapsed` does:
    '10.887140906s', '36.799829ms', '512µs'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            value = f"{seconds / scale:.9f}".rstrip("0").rstrip(".")
            return f"{value}{unit}"
    raise AssertionError("unreachable")


class GatewayError(Exception):
    """A refusal that exists only in Volcengine's gateway (no internal error means it):
    a missing or unknown Action/Version."""

    def __init__(self, code: str, code_n: int | None, status: int, message: str):
        super().__init__(message)
        self.code, self.code_n, self.status, self.message = code, code_n, status, message


def success(ctx: VolcContext, data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "code": SUCCESS,
            "data": data,
            "message": "Success",
            "request_id": ctx.request_id,
            "status": SUCCESS,
            "time_elapsed": ctx.elapsed(),
        }
    )


# internal code -> (Volcengine business code, its fixed message, HTTP status)
_BUSINESS: dict[str, tuple[int, str, int]] = {
    "rate_limited": (50429, "Request Has Reached API Limit, Please Try Later", 429),
    "too_many_in_flight": (
        50430,
        "Request Has Reached API Concurrent Limit, Please Try Later",
        429,
    ),
    "queue_full": (50430, "Request Has Reached API Concurrent Limit, Please Try Later", 429),
    "insufficient_credit": (50400, "Access Denied", 403),
    "image_cap_reached": (50400, "Access Denied", 403),
    "generation_failed": (50500, "Internal Error", 500),
    "internal_error": (50500, "Internal Error", 500),
    "generation_timeout": (50501, "Internal RPC Error", 500),
    "model_unavailable": (50501, "Internal RPC Error", 500),
    "upstream_error": (50500, "Internal Error", 500),
    "upstream_timeout": (50501, "Internal RPC Error", 500),
    "no_channel": (50501, "Internal RPC Error", 500),
}

# content_refused by the field refused: input text, text drawn on the image, input images
_REFUSED: dict[str, tuple[int, str]] = {
    "prompt": (50412, "Text Risk Not Pass"),
    "negative_prompt": (50412, "Text Risk Not Pass"),
    "watermark": (50413, "Post Text Risk Not Pass"),
    "output_image": (50511, "Post Img Risk Not Pass"),
}
_IMAGE_REFUSED = (50411, "Pre Img Risk Not Pass")

_ACCESS_DENIED = ("AccessDenied", 100013, 403)
_INVALID_PARAMETER = ("InvalidParameter", None, 400)
# internal code -> (gateway Error.Code, Error.CodeN, HTTP status), as Volcengine's public
# error-code table has them
_GATEWAY: dict[str, tuple[str, int | None, int]] = {
    "missing_api_key": ("MissingAuthenticationToken", 100003, 401),
    "invalid_api_key": ("InvalidAccessKey", 100009, 401),
    "signing_not_enabled": ("InvalidAccessKey", 100009, 401),
    "invalid_authorization": ("InvalidAuthorization", None, 400),
    "signature_mismatch": ("SignatureDoesNotMatch", 100010, 401),
    "signature_expired": ("InvalidTimestamp", 100006, 400),
    "signature_replayed": ("RequestReplayed", None, 401),
    "key_disabled": _ACCESS_DENIED,
    "key_expired": _ACCESS_DENIED,
    "account_disabled": _ACCESS_DENIED,
    "ip_not_allowed": _ACCESS_DENIED,
    "model_not_allowed": _ACCESS_DENIED,
    "admin_required": _ACCESS_DENIED,
    "missing_field": ("MissingParameter", 100002, 400),
    "invalid_value": _INVALID_PARAMETER,
    "unknown_parameter": _INVALID_PARAMETER,
    "invalid_json": _INVALID_PARAMETER,
    "conflicting_values": _INVALID_PARAMETER,
    "upstream_rejected": _INVALID_PARAMETER,
    "body_too_large": ("InvalidParameter", None, 413),
    "method_not_allowed": ("MethodNotAllowed", None, 405),
    "not_found": ("InvalidActionOrVersion", 100008, 404),
    "shutting_down": ("ServiceUnavailableTemp", None, 503),
}


def business_code(err: PixgateError) -> tuple[int, str, int] | None:
    """(code, fixed message, HTTP status) when `err` is a service-layer error."""
    if err.code == "content_refused":
        code, text = _REFUSED.get(err.param or "prompt", _IMAGE_REFUSED)
        return code, text, 400
    if err.code in _BUSINESS:
        return _BUSINESS[err.code]
    if err.code not in _GATEWAY and err.status >= 500:
        return _BUSINESS["internal_error"]
    return None


def render_error(
    err: PixgateError, lang: str, ctx: VolcContext | None = None, data: Any = None
) -> JSONResponse:
    """`err` in the layer Volcengine reports it in. `data`: the service layer's `data`
    (GetResult of a failed task still says `status: done`)."""
    ctx = ctx or _fallback_context()
    headers = dict(err.headers)
    found = business_code(err)
    if found is not None:
        code, text, status = found
        body = {
            "code": code,
            "data": data,
            "message": f"{text}: {err.message(lang)}",
            "request_id": ctx.request_id,
            "status": code,
            "time_elapsed": ctx.elapsed(),
        }
        return JSONResponse(body, status_code=status, headers=headers)
    code_name, code_n, status = _GATEWAY.get(
        err.code, ("".join(p.title() for p in err.code.split("_")), None, err.status)
    )
    return gateway_response(ctx, code_name, code_n, status, err.message(lang), headers)


def render_gateway_error(err: GatewayError, ctx: VolcContext) -> JSONResponse:
    return gateway_response(ctx, err.code, err.code_n, err.status, err.message)


def gateway_response(
    ctx: VolcContext,
    code: str,
    code_n: int | None,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"Code": code, "Message": message}
    if code_n is not None:
        error = {"CodeN": code_n, **error}
    meta = {
        "RequestId": ctx.request_id,
        "Action": ctx.action,
        "Version": ctx.version,
        "Service": ctx.service,
        "Region": ctx.region,
        "Error": error,
    }
    return JSONResponse({"ResponseMetadata": meta}, status_code=status, headers=headers)


def _fallback_context() -> VolcContext:
    """For errors raised before a handler ran (405, 404): the request id the middleware
    bound to the logging context."""
    rid = structlog.contextvars.get_contextvars().get("request_id", "")
    return VolcContext(request_id=str(rid))
