"""How each channel type's failures map to kinds (server, busy with Retry-After, timeout,
connect, auth, rejected with the upstream's message, content, bad_response), partial
answers, credentials kept out of messages, and the fake upstreams' other behaviours."""

from __future__ import annotations

import socket

import httpx
import pytest

from pixgate.spec.channels import ChannelSpec
from tests.relay_calls import (
    MULTI,
    ONE_PER_CALL,
    by_type,
    fails,
    fixtures,
    request,
    run,
)
from tests.upstreams import API_KEY, NOT_AN_IMAGE, REJECT_MESSAGE

fakes, up = fixtures()


# --- failures ------------------------------------------------------------------------------
@by_type()
@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        ("fail", "server"),
        ("busy", "busy"),
        ("unauthorized", "auth"),
        ("reject", "rejected"),
        ("content", "content"),
        ("empty", "bad_response"),
    ],
)
def test_failures_map_to_kinds(up, behaviour, kind):
    up.set(behaviour, seconds=7)
    failure = fails(up.channel(), request(n=2))
    assert failure.kind == kind, failure.message
    if behaviour == "busy":
        assert failure.retry_after == 7
    if behaviour == "reject":
        assert REJECT_MESSAGE in failure.message and failure.status in (400, 422)


@by_type()
def test_slow_upstream_times_out(up):
    up.set("slow", seconds=3)
    failure = fails(up.channel(timeout_seconds=0.2))
    assert failure.kind == "timeout" and failure.retryable


def test_unreachable_upstream_is_connect():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = ChannelSpec(
        name="gone", type="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="k"
    )
    assert fails(channel).kind == "connect"


@by_type("openai")
def test_an_echoed_credential_is_blanked(up):
    up.set("reject")
    up.reject_message = f"key {API_KEY} may not use this model"
    failure = fails(up.channel())
    assert "key *** may not" in failure.message
    up.reject_message = REJECT_MESSAGE


@by_type(*MULTI)
def test_partial_multi_image_answer(up):
    up.set("partial")
    assert len(run(up.channel(), request(n=3))) == 2


@by_type(*ONE_PER_CALL)
def test_partial_one_per_call_is_the_images_that_came(up):
    up.set("partial")
    assert len(run(up.channel(), request(n=4))) == 2 and len(up.calls) == 4
    up.set("fail")
    assert fails(up.channel(), request(n=2)).kind == "server"  # none came: the first failure


@by_type("ark", "siliconflow")
def test_bad_images_and_expiring_urls_reach_the_router(up):
    up.set("bad_image")
    (image,) = run(up.channel())
    assert image.data == NOT_AN_IMAGE
    up.response = "url"
    (image,) = run(up.channel())
    assert httpx.get(image.url or "").content == NOT_AN_IMAGE
    up.set("expiring_url")
    (image,) = run(up.channel())
    assert httpx.get(image.url or "").status_code == 403


@by_type("volcengine")
def test_concurrent_calls_are_counted(up):
    up.set("slow", seconds=0.3)
    assert len(run(up.channel(), request(n=3))) == 3
    assert up.max_in_flight == 3 and up.in_flight == 0


def test_volcengine_business_codes_decide_over_the_status():
    from pixgate.backends.relay.apis.volcengine import business_failure

    def kind(code: int, status: int = 400) -> str:
        response = httpx.Response(status, headers={"Retry-After": "3"})
        failure = business_failure({"code": code, "message": "m"}, response)
        assert failure is not None
        return failure.kind

    assert [kind(c) for c in (50411, 50412, 50413)] == ["content"] * 3
    assert [kind(c, 500) for c in (50429, 50430)] == ["busy"] * 2
    assert [kind(c, 400) for c in (50500, 50501)] == ["server"] * 2
    assert kind(50400, 200) == "auth" and kind(50215, 500) == "rejected"
    assert business_failure({"code": 10000}, httpx.Response(200)) is None
