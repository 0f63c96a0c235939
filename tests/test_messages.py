"""Every error code renders in English and Chinese with the values its raisers pass, and a
missing value is an exception under tests but a logged, whole sentence in production."""

from __future__ import annotations

import pytest

from pixgate import errors
from pixgate.errors import _MESSAGES, MessageArgumentMissing, PixgateError, template_fields

# code -> (param, args) as the code's raisers pass them (grep `PixgateError("<code>"`).
RAISED: dict[str, tuple[str | None, dict]] = {
    "invalid_value": ("size", {"detail": "must be 256x256", "detail_zh": "必须是 256x256"}),
    "missing_field": ("params", {}),
    "unknown_parameter": ("colour", {}),
    "invalid_json": ("body", {"detail": "line 1", "detail_zh": "line 1"}),
    "body_too_large": (None, {"size": "more than 1048576", "limit": 1048576}),
    "conflicting_values": ("n", {"other": "batch_size", "detail": "2 vs 3"}),
    "missing_api_key": (None, {}),
    "invalid_api_key": (None, {}),
    "signature_required": ("sign", {}),
    "invalid_signature": ("sign", {}),
    "invalid_authorization": (None, {"detail": "no Credential", "detail_zh": "缺少 Credential"}),
    "signing_not_enabled": (None, {"key": "0123abcd"}),
    "signature_mismatch": (
        "X-Content-Sha256",
        {"detail": "body changed", "detail_zh": "请求体已变"},
    ),
    "signature_expired": (
        None,
        {"date": "20240101T000000Z", "now": "20240101T001000Z", "minutes": 5},
    ),
    "signature_replayed": (None, {}),
    "key_disabled": (None, {}),
    "key_expired": (None, {"expires": "2024-01-01 00:00:00"}),
    "ip_not_allowed": (None, {"ip": "10.0.0.1"}),
    "model_not_allowed": ("model", {"model": "tiny-sd", "allowed": "paid-64"}),
    "account_disabled": (None, {}),
    "admin_required": (None, {}),
    "insufficient_credit": (
        None,
        {"requested": 2, "price": "0.2", "cost": "0.4", "balance": "0.1", "currency": "CNY"},
    ),
    "rate_limited": (None, {"limit": "account (1 per SECOND)", "retry_after": 1}),
    "too_many_in_flight": (None, {"limit": 2, "plan": "free"}),
    "code_invalid": ("code", {}),
    "code_redeemed": ("code", {}),
    "idempotency_conflict": (
        "Idempotency-Key",
        {"key": "pay-17", "amount": "12.5", "user": "alice"},
    ),
    "user_exists": (None, {"name": "alice"}),
    "user_not_found": (None, {"user": "bob"}),
    "key_not_found": (None, {"key": "sk-abc"}),
    "content_refused": ("prompt", {}),
    "job_not_found": (None, {"job": "j1"}),
    "job_finished": (None, {"job": "j1", "status": "succeeded"}),
    "cancelled": (None, {"job": "j1"}),
    "model_not_found": ("model", {"model": "dall-e-9", "available": "tiny-sd"}),
    "not_found": (None, {"path": "/nowhere"}),
    "method_not_allowed": (None, {"method": "PUT"}),
    "url_invalid": (None, {"ttl": 3600}),
    "image_cap_reached": (None, {"used": 3, "cap": 3, "requested": 1}),
    "queue_full": (None, {"depth": 100, "retry_after": 5}),
    "model_unavailable": (
        "model",
        {"model": "tiny-sd", "detail": "no weights", "detail_zh": "no weights"},
    ),
    "shutting_down": (None, {}),
    "upstream_error": ("model", {"model": "relayed", "detail": "2 upstream calls failed"}),
    "upstream_timeout": ("model", {"model": "relayed", "detail": "1 upstream call failed"}),
    "no_channel": ("model", {"model": "relayed", "detail": "disabled"}),
    "upstream_rejected": ("model", {"model": "relayed", "detail": "HTTP 400: bad size"}),
    "generation_timeout": (None, {"timeout": "30"}),
    "generation_failed": (None, {"request_id": "req-1"}),
    "internal_error": (None, {"request_id": "req-1"}),
}


def test_the_table_lists_every_code():
    assert set(RAISED) == set(_MESSAGES)


@pytest.mark.parametrize("code", sorted(_MESSAGES))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_code_renders_whole_in_both_languages(code, lang):
    assert errors.strict_messages()  # the suite's conftest turns strict mode on
    param, args = RAISED[code]
    err = PixgateError(code, param=param, args_=args)
    text = err.message(lang)
    assert "{" not in text and "?" not in text and "None" not in text, text
    for name in template_fields(code)[lang] - {"param"}:
        assert str(args[name]) in text
    if param is not None and "param" in template_fields(code)[lang]:
        assert param in text


def test_a_missing_value_raises_under_tests_and_is_logged_in_production(monkeypatch):
    with pytest.raises(MessageArgumentMissing, match=r"rate_limited.*retry_after"):
        PixgateError("rate_limited", args_={"limit": "1 per second"})

    monkeypatch.delenv("PIXGATE_STRICT_MESSAGES")
    monkeypatch.setattr(errors, "STRICT_MESSAGES", False)
    err = PixgateError("rate_limited", args_={"limit": "1 per second"})
    # the whole sentence, with a gap where the value is missing (it used to stop there)
    assert err.message("en") == "Rate limit exceeded: 1 per second. Retry after ? seconds."
    assert err.message("zh") == "请求过于频繁:1 per second。请 ? 秒后重试。"
    assert err.status == 429
