"""The one internal error type. Each dialect renders it in its own wire shape.

Messages exist in English and Chinese; `Accept-Language` picks one.

A message template whose value the raiser did not supply is a bug. Under tests
(`PIXGATE_STRICT_MESSAGES=1`, set by the test suite's conftest, or `STRICT_MESSAGES`)
rendering it raises `MessageArgumentMissing`, so the bug fails the test that reaches it; in
production it is logged and the message is rendered with `?` in the gap, so the client
still gets the whole sentence and its status.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("pixgate.errors")

STRICT_MESSAGES = False
"""Raise on a missing template value (also on with PIXGATE_STRICT_MESSAGES=1)."""

# code -> (HTTP status, English template, Chinese template)
_MESSAGES: dict[str, tuple[int, str, str]] = {
    "invalid_value": (
        400,
        "Invalid value for '{param}': {detail}",
        "参数 '{param}' 无效:{detail_zh}",
    ),
    "missing_field": (400, "Missing required field '{param}'.", "缺少必填参数 '{param}'。"),
    "unknown_parameter": (
        400,
        "Unknown parameter '{param}'.",
        "未知参数 '{param}'。",
    ),
    "invalid_json": (
        400,
        "Request body is not valid JSON: {detail}",
        "请求体不是有效的 JSON:{detail}",
    ),
    "body_too_large": (
        413,
        "Request body is {size} bytes; the limit is {limit} bytes.",
        "请求体为 {size} 字节,超过上限 {limit} 字节。",
    ),
    "conflicting_values": (
        400,
        "'{param}' and '{other}' disagree ({detail}); send one of them.",
        "参数 '{param}' 与 '{other}' 冲突({detail}),请只传其中一个。",
    ),
    "missing_api_key": (
        401,
        "No API key provided. Send 'Authorization: Bearer <key>'.",
        "未提供 API 密钥,请使用 'Authorization: Bearer <key>'。",
    ),
    "invalid_api_key": (401, "Invalid API key.", "API 密钥无效或不存在。"),
    "signature_required": (
        401,
        "This API key requires signed requests: send the '{param}' header "
        "(md5 of the query string followed by the key's signing secret).",
        "该 API 密钥已开启签名校验:请传入 '{param}' 请求头(查询字符串加签名密钥的 md5)。",
    ),
    "invalid_signature": (
        401,
        "The '{param}' header does not match: it must be md5 of the query string followed by "
        "the key's signing secret, in lower-case hex.",
        "'{param}' 签名不正确:应为查询字符串加签名密钥的 md5(小写十六进制)。",
    ),
    "invalid_authorization": (
        401,
        "Malformed signed request: {detail}.",
        "签名请求格式错误:{detail_zh}。",
    ),
    "signing_not_enabled": (
        401,
        "API key '{key}' has no signing secret: create a signing key "
        "(`pixgate keys create --signing`) or send 'Authorization: Bearer <key>'.",
        "API 密钥 '{key}' 没有签名密钥:请创建签名密钥(`pixgate keys create --signing`),"
        "或使用 'Authorization: Bearer <key>'。",
    ),
    "signature_mismatch": (
        401,
        "The request signature does not match: {detail}.",
        "请求签名不匹配:{detail_zh}。",
    ),
    "signature_expired": (
        401,
        "The request is signed for {date}, more than {minutes} minutes from the server's time "
        "{now} (UTC); sign it again with the current time.",
        "请求签名时间 {date} 与服务器时间 {now}(UTC)相差超过 {minutes} 分钟,请用当前时间重新签名。",
    ),
    "signature_replayed": (
        401,
        "This signed request was already received; sign every request anew (X-Date counts "
        "whole seconds, so identical requests must be at least a second apart).",
        "该签名请求已被使用过,请为每个请求重新签名(X-Date 精确到秒,相同的请求至少间隔一秒)。",
    ),
    "key_disabled": (403, "This API key has been revoked.", "该 API 密钥已被禁用。"),
    "key_expired": (
        403,
        "This API key expired at {expires} UTC.",
        "该 API 密钥已于 {expires}(UTC)过期。",
    ),
    "ip_not_allowed": (
        403,
        "This API key may not be used from {ip}.",
        "该 API 密钥不允许从 {ip} 使用。",
    ),
    "model_not_allowed": (
        403,
        "This API key may not use model '{model}'; allowed: {allowed}.",
        "该 API 密钥不能使用模型 '{model}';允许的模型:{allowed}。",
    ),
    "account_disabled": (403, "This account is disabled.", "该账户已被禁用。"),
    "admin_required": (
        403,
        "This endpoint needs an admin API key.",
        "此接口需要管理员 API 密钥。",
    ),
    "insufficient_credit": (
        429,
        "Insufficient credit: {requested} image(s) at {price} {currency} cost {cost} {currency}; "
        "the balance is {balance} {currency}.",
        "余额不足:{requested} 张图片单价 {price} {currency},共需 {cost} {currency};"
        "当前余额 {balance} {currency}。",
    ),
    "rate_limited": (
        429,
        "Rate limit exceeded: {limit}. Retry after {retry_after} seconds.",
        "请求过于频繁:{limit}。请 {retry_after} 秒后重试。",
    ),
    "too_many_in_flight": (
        429,
        "Too many requests in progress for this account ({limit} at a time on plan {plan}).",
        "该账户同时进行的请求过多(套餐 {plan} 最多同时 {limit} 个)。",
    ),
    "code_invalid": (400, "This redemption code does not exist.", "兑换码不存在。"),
    "code_redeemed": (409, "This redemption code has already been used.", "兑换码已被使用。"),
    "idempotency_conflict": (
        409,
        "Idempotency-Key '{key}' was already used for a top-up of {amount} to user '{user}'; "
        "a retry must repeat that request, a new payment needs a new key.",
        "Idempotency-Key '{key}' 已用于向用户 '{user}' 充值 {amount};"
        "重试须与原请求一致,新的付款请使用新的 key。",
    ),
    "user_exists": (409, "A user named '{name}' already exists.", "用户 '{name}' 已存在。"),
    "user_not_found": (404, "No user '{user}'.", "用户 '{user}' 不存在。"),
    "key_not_found": (404, "No API key '{key}'.", "API 密钥 '{key}' 不存在。"),
    "content_refused": (
        451,
        "The {param} was refused: it contains content that may not be generated.",
        "{param} 含有不允许生成的内容,已拒绝。",
    ),
    "job_not_found": (404, "No job '{job}' for this account.", "该账户下没有任务 '{job}'。"),
    "job_finished": (
        409,
        "Job '{job}' has already finished ({status}).",
        "任务 '{job}' 已结束({status})。",
    ),
    "cancelled": (
        409,
        "Task '{job}' was cancelled by its owner; nothing was charged.",
        "任务 '{job}' 已被取消,本次不计费。",
    ),
    "model_not_found": (
        404,
        "Model '{model}' does not exist. Available models: {available}.",
        "模型 '{model}' 不存在。可用模型:{available}。",
    ),
    "not_found": (404, "Not found: {path}", "资源不存在:{path}"),
    "method_not_allowed": (
        405,
        "Method {method} is not allowed here.",
        "此处不允许 {method} 方法。",
    ),
    "url_invalid": (
        403,
        "This image URL is invalid or has expired (links last {ttl} seconds).",
        "图片链接无效或已过期(链接有效期 {ttl} 秒)。",
    ),
    "image_cap_reached": (
        429,
        "This API key's image limit is reached: {used} of {cap} images used, "
        "{requested} requested.",
        "该 API 密钥的图片数量已达上限:已用 {used} / {cap} 张,本次请求 {requested} 张。",
    ),
    "queue_full": (
        503,
        "The server is busy ({depth} jobs queued). Retry after {retry_after} seconds.",
        "服务繁忙(队列中有 {depth} 个任务),请 {retry_after} 秒后重试。",
    ),
    "model_unavailable": (
        503,
        "Model '{model}' could not be loaded: {detail}",
        "模型 '{model}' 无法加载:{detail}",
    ),
    "upstream_error": (
        502,
        "The upstream provider of model '{model}' failed ({detail}); nothing was charged.",
        "模型 '{model}' 的上游服务出错({detail}),本次不计费。",
    ),
    "upstream_timeout": (
        504,
        "The upstream provider of model '{model}' did not answer in time ({detail}); "
        "nothing was charged.",
        "模型 '{model}' 的上游服务响应超时({detail}),本次不计费。",
    ),
    "no_channel": (
        503,
        "No upstream channel can serve model '{model}' now ({detail}); retry later, nothing "
        "was charged.",
        "模型 '{model}' 暂无可用的上游通道({detail}),请稍后重试,本次不计费。",
    ),
    "upstream_rejected": (
        400,
        "The upstream provider of model '{model}' refused the request: {detail}",
        "模型 '{model}' 的上游服务拒绝了该请求:{detail}",
    ),
    "shutting_down": (503, "The server is shutting down.", "服务正在关闭。"),
    "generation_timeout": (
        504,
        "Generation did not finish within {timeout} seconds; nothing was charged.",
        "生成未在 {timeout} 秒内完成,本次不计费。",
    ),
    "generation_failed": (
        500,
        "Image generation failed; nothing was charged. Request id {request_id}.",
        "图片生成失败,本次不计费。请求编号 {request_id}。",
    ),
    "internal_error": (
        500,
        "Internal server error. Request id {request_id}.",
        "服务器内部错误。请求编号 {request_id}。",
    ),
}


class MessageArgumentMissing(KeyError):
    """An error message template names a value its raiser did not pass (strict mode)."""


def strict_messages() -> bool:
    return STRICT_MESSAGES or os.environ.get("PIXGATE_STRICT_MESSAGES") == "1"


def template_fields(code: str) -> dict[str, set[str]]:
    """The values each language's template of `code` needs, e.g. {"en": {"param"}, ...}."""
    _, en, zh = _MESSAGES[code]
    return {
        lang: {name for _, name, _, _ in string.Formatter().parse(text) if name}
        for lang, text in (("en", en), ("zh", zh))
    }


class _Gaps(dict):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass
class PixgateError(Exception):
    """An error with a stable `code`, an HTTP status, and the field it concerns."""

    code: str
    param: str | None = None
    args_: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in _MESSAGES:
            raise KeyError(f"unknown error code {self.code}")
        super().__init__(self.message("en"))

    @property
    def status(self) -> int:
        return _MESSAGES[self.code][0]

    def message(self, lang: str = "en") -> str:
        _, en, zh = _MESSAGES[self.code]
        template = zh if lang == "zh" else en
        values = {"param": self.param, **self.args_}
        try:
            return template.format(**values)
        except KeyError as exc:  # a template value nobody supplied
            problem = f"error {self.code!r} ({lang}) needs {exc.args[0]!r}; got {sorted(values)}"
            if strict_messages():
                raise MessageArgumentMissing(problem) from None
            log.error("error message argument missing", problem=problem)
            return template.format_map(_Gaps(values))


def invalid(param: str, detail: str, detail_zh: str | None = None) -> PixgateError:
    """A 400 naming `param`; `detail` says what is allowed (English, optional Chinese)."""
    return PixgateError(
        "invalid_value", param=param, args_={"detail": detail, "detail_zh": detail_zh or detail}
    )


def pick_language(accept_language: str | None) -> str:
    """'zh-CN,zh;q=0.9,en;q=0.8' -> 'zh'. English unless Chinese ranks first."""
    if not accept_language:
        return "en"
    best, best_q = "en", -1.0
    for part in accept_language.split(","):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = lang.strip().lower().split("-")[0]
        if primary in ("zh", "en") and q > best_q:
            best, best_q = primary, q
    return best
