"""What each channel type's upstream answers, for the fake upstreams of tests/upstreams.py:
success bodies with images, and each type's error bodies (server error, rate limit, bad
credentials, a refused request, a refused prompt) in that API's own shape."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

from PIL import Image

REJECT_MESSAGE = "fake upstream refuses this request: width is not supported"
NOT_AN_IMAGE = b"this is not an image"
IMAGE_SIZE = (64, 64)


def image_png(i: int = 0) -> bytes:
    """Image i of an answer: a solid colour that differs by index."""
    out = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, ((60 + 40 * i) % 256, 150, 200)).save(out, "PNG")
    return out.getvalue()


def error_answer(kind: str, type: str, message: str) -> tuple[int, Any]:
    """(status, body) of `type`'s answer for behaviour `kind` (fail, busy, unauthorized,
    reject, content)."""
    openai = {
        "fail": (500, "server_error", None, "The server had an error processing your request."),
        "busy": (429, "requests", "rate_limit_exceeded", "Rate limit reached for images."),
        "unauthorized": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key."),
        "reject": (400, "invalid_request_error", None, message),
        "content": (
            400,
            "invalid_request_error",
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
        ),
    }
    volc = {  # business code, message, status
        "fail": (50500, "Internal Error", 500),
        "busy": (50429, "Request Has Reached API Limit, Please Try Later", 429),
        "reject": (50215, message, 400),
        "content": (50412, "Text Risk Not Pass", 400),
    }
    ark = {
        "fail": (500, "InternalServiceError", "The service encountered an unexpected error."),
        "busy": (429, "RateLimitExceeded.EndpointRPMExceeded", "Request rate limit exceeded."),
        "unauthorized": (401, "AuthenticationError", "The API key in the request is invalid."),
        "reject": (400, "InvalidParameter", message),
        "content": (
            400,
            "InputTextSensitiveContentDetected",
            "The request failed because the input text may contain sensitive information.",
        ),
    }
    plain = {  # siliconflow and a1111: status, code, message
        "fail": (500, 50000, "Internal server error"),
        "busy": (429, 50603, "System is too busy now. Please try again later."),
        "unauthorized": (401, 20007, "Invalid token"),
        "reject": (400, 20012, message),
        "content": (451, 20043, "The prompt contains content that may not be generated."),
    }
    if type == "openai":
        status, err_type, code, text = openai[kind]
        return status, {"error": {"message": text, "type": err_type, "param": None, "code": code}}
    if type == "volcengine":
        if kind == "unauthorized":
            return gateway_answer("SignatureDoesNotMatch")
        code, text, status = volc[kind]
        body = {"code": code, "data": None, "message": text, "status": code}
        return status, {**body, "request_id": uuid.uuid4().hex, "time_elapsed": "1.2ms"}
    if type == "ark":
        status, code, text = ark[kind]
        return status, {"error": {"code": code, "message": text, "param": "", "type": ""}}
    status, code, text = plain[kind]
    if type == "a1111":
        if kind == "reject":
            detail = [{"loc": ["body", "width"], "msg": text, "type": "value_error"}]
            return 422, {"detail": detail}
        if kind == "fail":
            return 500, {"error": "RuntimeError", "detail": "", "body": "", "errors": text}
        return status, {"detail": text}
    return status, {"code": code, "message": text, "data": None}


# Volcengine gateway Error.Code -> (CodeN, Message), after its public error-code table
GATEWAY_CODES = {
    "MissingAuthenticationToken": (100003, "The request does not carry a signature."),
    "InvalidActionOrVersion": (100008, "Could not find operation for this version."),
    "InvalidAccessKey": (100009, "The access key is not valid."),
    "SignatureDoesNotMatch": (100010, "The request signature we calculated does not match."),
}


def gateway_answer(code: str, status: int = 401) -> tuple[int, Any]:
    """Volcengine's API gateway refusing a request (a signature, a key, an action)."""
    code_n, message = GATEWAY_CODES[code]
    error = {"Code": code, "CodeN": code_n, "Message": message}
    meta = {"RequestId": uuid.uuid4().hex, "Action": "CVProcess", "Version": "2022-08-31"}
    meta.update(Service="cv", Region="cn-north-1")
    return status, {"ResponseMetadata": {**meta, "Error": error}}


def success_answer(type: str, images: list[tuple[str, str]]) -> Any:
    """The 200 answer of `type` with `images`: ("b64", base64) or ("url", link) each."""
    items = [{"b64_json" if kind == "b64" else "url": value} for kind, value in images]
    if type == "openai":
        return {"created": int(time.time()), "data": items}
    if type == "siliconflow":
        return {"images": items, "timings": {"inference": 0.01}, "seed": 1}
    if type == "ark":
        sized = [{**item, "size": "x".join(map(str, IMAGE_SIZE))} for item in items]
        return {
            "model": "seedream",
            "created": int(time.time()),
            "data": sized,
            "usage": {"generated_images": len(items)},
        }
    if type == "a1111":
        return {"images": [value for _, value in images], "parameters": {}, "info": "{}"}
    encoded = [value for kind, value in images if kind == "b64"]
    urls = [value for kind, value in images if kind == "url"]
    data = {"binary_data_base64": encoded, "image_urls": urls or None}
    return {
        "code": 10000,
        "data": data,
        "message": "Success",
        "status": 10000,
        "request_id": uuid.uuid4().hex,
        "time_elapsed": "1.5ms",
    }
