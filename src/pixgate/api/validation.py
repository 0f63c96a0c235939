"""Turn pydantic validation errors into PixgateErrors that name the field and the allowed
range, in the words a client can act on. (Reading and parsing bodies: `pixgate.api.bodies`,
whose `parse_json_object` and `MAX_JSON_BYTES` are re-exported here.)"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import annotated_types as at
from fastapi import Request
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pixgate.api.bodies import MAX_JSON_BYTES, json_body, parse_json_object
from pixgate.errors import PixgateError, invalid

__all__ = [
    "MAX_JSON_BYTES",
    "json_model",
    "parse_json_object",
    "to_pixgate_error",
    "validate",
]

_TYPE_WORDS = {
    "Decimal": ("a decimal amount", "十进制金额"),
    "int": ("an integer", "整数"),
    "float": ("a number", "数字"),
    "bool": ("true or false", "true 或 false"),
    "string": ("a string", "字符串"),
}


def _field_info(model: type[BaseModel], field: str) -> FieldInfo | None:
    """A field by its name or its alias (`async` is spelled `async_` in Python)."""
    info = model.model_fields.get(field)
    if info is None:
        info = next((f for f in model.model_fields.values() if f.alias == field), None)
    return info


def _bounds(model: type[BaseModel], field: str) -> dict[str, Any]:
    info = _field_info(model, field)
    found: dict[str, Any] = {}
    for meta in info.metadata if info else []:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            if isinstance(meta, at.BaseMetadata) and hasattr(meta, attr):
                found[attr] = getattr(meta, attr)
    return found


def describe_range(model: type[BaseModel], field: str, kind: str) -> tuple[str, str]:
    """('must be an integer between 1 and 100', Chinese) from the field's constraints."""
    b = _bounds(model, field)
    word_en, word_zh = _TYPE_WORDS.get(kind, ("a value", "值"))
    low, high = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    if "min_length" in b or "max_length" in b:
        lo, hi = b.get("min_length", 0), b.get("max_length")
        if hi is not None:
            return (
                f"must be a string of {lo} to {hi} characters",
                f"必须是长度 {lo} 到 {hi} 的字符串",
            )
        return f"must be a string of at least {lo} characters", f"长度至少为 {lo}"
    if low is not None and high is not None:
        return (
            f"must be {word_en} between {low} and {high}",
            f"必须是 {low} 到 {high} 之间的{word_zh}",
        )
    if low is not None:
        return f"must be {word_en} >= {low}", f"必须是不小于 {low} 的{word_zh}"
    if high is not None:
        return f"must be {word_en} <= {high}", f"必须是不大于 {high} 的{word_zh}"
    return f"must be {word_en}", f"必须是{word_zh}"


def _field_kind(model: type[BaseModel], field: str) -> str:
    info = _field_info(model, field)
    text = repr(info.annotation) if info else ""
    for kind in ("Decimal", "bool", "int", "float"):
        if kind in text:
            return kind
    return "string"


def to_pixgate_error(exc: ValidationError, model: type[BaseModel]) -> PixgateError:
    """The first error, as a 400 that names the field."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    top = str(err["loc"][0]) if err["loc"] else ""
    etype = err["type"]
    if etype == "missing":
        return PixgateError("missing_field", param=field)
    if etype == "extra_forbidden":
        return PixgateError("unknown_parameter", param=field)
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return invalid(field, f"must be one of {expected}", f"必须是 {expected} 之一")
    if etype == "model_type":
        return invalid("body", "must be a JSON object", "必须是 JSON 对象")
    en, zh = describe_range(model, top, _field_kind(model, top))
    got = err.get("input")
    if isinstance(got, (str, int, float, bool)) and len(str(got)) <= 40:
        en, zh = f"{en} (got {json.dumps(got, ensure_ascii=False)})", f"{zh}(收到 {got})"
    return invalid(field, en, zh)


def validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """`body` as `model`, or a 400 naming the first bad field. A model configured
    `strict` (the dialects' JSON bodies: `"seed": "5"` and `"async": "yes"` are refused)
    is validated strictly all the way down, its nested models included."""
    try:
        return model.model_validate(body, strict=model.model_config.get("strict"))
    except ValidationError as exc:
        raise to_pixgate_error(exc, model) from exc


def json_model(
    model: type[BaseModel], limit: int = MAX_JSON_BYTES
) -> Callable[[Request], Awaitable[Any]]:
    """A dependency: the JSON body (capped at `limit` while it streams) as `model`.
    Declared after the caller, so an unknown key is refused before the body is read."""
    read = json_body(limit)

    async def body(request: Request) -> Any:
        return validate(model, await read(request))

    return body
