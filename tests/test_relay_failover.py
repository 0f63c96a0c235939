"""Relayed models end to end, when upstreams fail: failover in priority order, each channel
tried at most once per request, the circuit breaker opening and a half-open probe closing
it, Retry-After honoured, a channel disabled on 401 (shown in GET /admin/channels) and
enabled again by an admin, and the errors clients get (502, 504, 503, 400, 451) with
nothing charged. Each test has its own server: channel states are per server."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.conftest import balance
from tests.images import gradient_png
from tests.relay_servers import (
    audit_clean,
    channels,
    fixtures,
    generate,
    own_images,
    relayed,
    router,
    until,
)
from tests.upstreams import REJECT_MESSAGE

upstreams, module_upstreams = fixtures()


@pytest.fixture
def relay(make_server, upstreams):
    """relay(*channel specs as (name, behaviour, overrides)) -> (server, {name: fake}):
    a server with model `m` relayed to the channels in the order given, priority
    descending in that order (the first is tried first)."""

    def make(*wanted, response="b64", type="openai", **settings):
        fakes, specs = {}, []
        for i, (name, behaviour, overrides) in enumerate(wanted):
            fake = upstreams(type, response)
            fake.set(behaviour)
            fakes[name] = fake
            specs.append(fake.channel(name, priority=len(wanted) - i, **overrides))
        server = make_server(
            channels=specs,
            models=[relayed("m", *fakes)],
            demo=False,
            shutdown_grace_seconds=1,
            **settings,
        )
        return server, fakes

    return make


def calls(fakes) -> dict[str, int]:
    return {name: len(fake.calls) for name, fake in fakes.items()}


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


# --- failover ----------------------------------------------------------------------------
def test_failover_follows_priority_and_stops_at_the_first_success(relay):
    server, fakes = relay(("a", "fail", {}), ("b", "ok", {}), ("c", "ok", {}))
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        r = generate(c, "m", n=2)
    assert r.status_code == 200, r.text
    assert len(own_images(server, r.json())) == 2
    assert calls(fakes) == {"a": 1, "b": 1, "c": 0}
    view = channels(server, admin)
    assert (view["a"]["last_hour"]["calls"], view["a"]["last_hour"]["ok"]) == (1, 0)
    assert (view["b"]["last_hour"]["calls"], view["b"]["last_hour"]["ok"]) == (1, 1)
    assert view["b"]["last_hour"]["images"] == 2 and view["c"]["last_hour"]["calls"] == 0
    assert view["a"]["models"] == ["m"] and view["a"]["priority"] == 3
    assert balance(server, key) == Decimal("9.8")


def test_channels_that_failed_a_request_are_not_called_again_for_it(relay):
    server, fakes = relay(("a", "fail", {}), ("b", "fail", {}), ("c", "ok", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 1, "b": 1, "c": 1}
        fakes["c"].set("fail")
        r = generate(c, "m")
    err = error(r, 502, "upstream_error")
    assert "3 upstream calls failed" in err["message"] and "nothing was charged" in err["message"]
    assert calls(fakes) == {"a": 2, "b": 2, "c": 2}
    assert balance(server, key) == Decimal("9.9")


def test_relay_max_attempts_bounds_the_calls_of_a_request(relay):
    server, fakes = relay(
        ("a", "fail", {}), ("b", "fail", {}), ("c", "ok", {}), relay_max_attempts=2
    )
    key = server.create_key(credit="10")
    with server.client(key) as c:
        r = generate(c, "m")
    error(r, 502, "upstream_error")
    assert calls(fakes) == {"a": 1, "b": 1, "c": 0}
    assert balance(server, key) == Decimal("10")


def test_breaker_opens_after_the_threshold_and_a_probe_closes_it(relay):
    breaker = {"failure_threshold": 2, "cooldown_seconds": 2}
    server, fakes = relay(("a", "fail", breaker), ("b", "ok", {}))
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        for _ in range(2):
            assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 2, "b": 2}
        fakes["a"].set("ok")
        assert generate(c, "m").status_code == 200  # a is skipped while open
        assert calls(fakes) == {"a": 2, "b": 3}
        assert channels(server, admin)["a"]["state"] == "open"
        until(lambda: router(server).channels["a"].state == "half_open", what="cooldown")
        assert generate(c, "m").status_code == 200  # the probe, which succeeds
        assert calls(fakes) == {"a": 3, "b": 3}
        until(lambda: channels(server, admin)["a"]["state"] == "closed", what="a closed")
        assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 4, "b": 3}
    assert balance(server, key) == Decimal("9.5")


def test_a_failed_probe_opens_the_breaker_again(relay):
    breaker = {"failure_threshold": 1, "cooldown_seconds": 2}
    server, fakes = relay(("a", "fail", breaker), ("b", "ok", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
        until(lambda: router(server).channels["a"].state == "half_open", what="cooldown")
        assert generate(c, "m").status_code == 200  # the probe fails; b serves
        assert generate(c, "m").status_code == 200  # open again: a is skipped
        assert calls(fakes) == {"a": 2, "b": 3}
        assert router(server).channels["a"].state == "open"


def test_retry_after_is_honoured(relay):
    server, fakes = relay(("a", "busy", {}), ("b", "ok", {}))
    fakes["a"].set("busy", seconds=2)
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 1, "b": 1}
        fakes["a"].set("ok")
        assert generate(c, "m").status_code == 200  # a waits out its Retry-After
        assert calls(fakes) == {"a": 1, "b": 2}
        assert channels(server, admin)["a"]["state"] == "busy"
        until(lambda: router(server).channels["a"].state != "busy", timeout=5, what="2 s")
        assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 2, "b": 2}


def test_401_disables_the_channel_until_an_admin_enables_it(relay):
    server, fakes = relay(("a", "unauthorized", {}), ("b", "ok", {}))
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 1, "b": 1}
        shown = until(
            lambda: (v := channels(server, admin)["a"])["disabled"] and v, what="a disabled"
        )
        assert shown["state"] == "disabled" and "credentials" in shown["disabled_reason"]
        assert channels(server, admin)["b"]["state"] == "closed"
        metrics = c.get("/metrics").text  # the state gauge: 3 is disabled
        assert 'pixgate_channel_state{channel="a"} 3.0' in metrics, metrics
        assert 'pixgate_channel_requests_total{channel="a",outcome="auth"} 1.0' in metrics
        fakes["a"].set("ok")
        for _ in range(2):
            assert generate(c, "m").status_code == 200
        assert calls(fakes) == {"a": 1, "b": 3}  # disabled: never called
        # only admins see or change channels
        assert c.get("/admin/channels").status_code == 403
        assert c.post("/admin/channels/a/enable").status_code == 403
    with server.client(admin) as ac:
        r = ac.post("/admin/channels/a/enable")
        assert r.status_code == 200, r.text
        assert r.json()["disabled"] is False and r.json()["state"] == "closed"
        assert ac.get("/admin/channels/a").json()["disabled"] is False
        assert ac.post("/admin/channels/nope/enable").status_code == 404
    until(lambda: router(server).channels["a"].disabled is None, what="the worker enables a")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
    assert calls(fakes) == {"a": 2, "b": 3}
    assert not channels(server, admin)["a"]["disabled"]


def test_a_disabled_channel_stays_disabled_after_a_restart(make_server, relay, tmp_path):
    server, fakes = relay(("a", "unauthorized", {}), ("b", "ok", {}), data_dir=tmp_path / "d")
    key = server.create_key(credit="10")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
    admin = server.create_key(role="admin")
    until(lambda: channels(server, admin)["a"]["disabled"], what="a disabled")
    server.stop()
    fakes["a"].set("ok")
    again = make_server(
        channels=server.settings.channels,
        models=[relayed("m", "a", "b")],
        demo=False,
        data_dir=tmp_path / "d",
    )
    with again.client(key) as c:
        assert generate(c, "m").status_code == 200
    assert calls(fakes) == {"a": 1, "b": 2}
    assert channels(again, admin)["a"]["state"] == "disabled"
    audit_clean(again)


def test_admin_disable_takes_a_channel_out_and_test_calls_it(relay):
    server, fakes = relay(("a", "ok", {}), ("b", "ok", {}))
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(admin) as ac:
        r = ac.post("/admin/channels/a/disable")
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert r.json()["state"] == "disabled" and "disabled by" in r.json()["disabled_reason"]
        tested = ac.post("/admin/channels/b/test").json()
        assert tested["ok"] and tested["images"] == 1 and tested["model"] == "m"
        assert tested["latency_ms"] >= 0 and tested["error"] is None
    assert calls(fakes) == {"a": 0, "b": 1}
    until(lambda: router(server).channels["a"].disabled, what="the worker disables a")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
    assert calls(fakes) == {"a": 0, "b": 2}
    assert balance(server, key) == Decimal("9.9")  # the test call cost nothing


# --- errors ------------------------------------------------------------------------------
def test_every_channel_failing_is_502(relay):
    server, fakes = relay(("a", "fail", {}), ("b", "fail", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        err = error(generate(c, "m"), 502, "upstream_error")
    assert "'m'" in err["message"] and "HTTP 500" in err["message"]
    assert calls(fakes) == {"a": 1, "b": 1}
    assert balance(server, key) == Decimal("10")
    assert server.key_row(key).images_reserved == 0
    audit_clean(server)


def test_every_channel_too_slow_is_504(relay):
    slow = {"timeout_seconds": 0.3}
    server, fakes = relay(("a", "slow", slow), ("b", "slow", slow))
    for fake in fakes.values():
        fake.set("slow", seconds=30)
    key = server.create_key(credit="10")
    with server.client(key) as c:
        err = error(generate(c, "m"), 504, "upstream_timeout")
    assert "0.3 s" in err["message"]
    assert calls(fakes) == {"a": 1, "b": 1}
    assert balance(server, key) == Decimal("10")
    audit_clean(server)


def test_no_channel_available_is_503_with_retry_after(relay):
    server, fakes = relay(("a", "unauthorized", {}), ("b", "unauthorized", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        error(generate(c, "m"), 502, "upstream_error")  # both refuse the credentials
        r = generate(c, "m")  # ... and are disabled now
    err = error(r, 503, "no_channel")
    assert r.headers["retry-after"] and int(r.headers["retry-after"]) > 0
    assert "disabled" in err["message"] and "'m'" in err["message"]
    assert calls(fakes) == {"a": 1, "b": 1}
    assert balance(server, key) == Decimal("10")


def test_every_channel_busy_is_503_with_retry_after(relay):
    server, fakes = relay(("a", "busy", {}), ("b", "busy", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        error(generate(c, "m"), 502, "upstream_error")
        r = generate(c, "m")
    err = error(r, 503, "no_channel")
    assert "busy for" in err["message"] and r.headers["retry-after"]
    assert calls(fakes) == {"a": 1, "b": 1}
    assert balance(server, key) == Decimal("10")


def test_upstream_refusal_is_400_with_its_message_and_not_retried(relay):
    server, fakes = relay(("a", "reject", {}), ("b", "ok", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        err = error(generate(c, "m"), 400, "upstream_rejected")
    assert REJECT_MESSAGE in err["message"] and "'m'" in err["message"]
    assert calls(fakes) == {"a": 1, "b": 0}
    assert balance(server, key) == Decimal("10")


def test_upstream_content_refusal_is_451_and_not_retried(relay):
    server, fakes = relay(("a", "content", {}), ("b", "ok", {}))
    key = server.create_key(credit="10")
    with server.client(key) as c:
        r = generate(c, "m")
    assert r.status_code == 451, r.text
    assert r.json()["error"]["code"] == "content_refused"
    assert calls(fakes) == {"a": 1, "b": 0}
    assert balance(server, key) == Decimal("10")


@pytest.mark.parametrize(
    ("behaviour", "response"),
    [("bad_image", "b64"), ("bad_image", "url"), ("expiring_url", "url"), ("empty", "b64")],
)
def test_unusable_answers_fail_over_to_the_next_channel(relay, behaviour, response):
    server, fakes = relay(("a", behaviour, {}), ("b", "ok", {}), response=response)
    key = server.create_key(credit="10")
    with server.client(key) as c:
        r = generate(c, "m", n=2)
    assert r.status_code == 200, r.text
    assert len(own_images(server, r.json())) == 2
    assert calls(fakes) == {"a": 1, "b": 1}
    if behaviour == "expiring_url" or (behaviour == "bad_image" and response == "url"):
        assert len(fakes["a"].downloads) == 2  # the relay tried the links
    assert balance(server, key) == Decimal("9.8")


def test_each_dialect_reports_upstream_failures_in_its_own_shape(make_server, upstreams):
    """a1111 channels take every optional field, so every dialect reaches them."""
    broken, refusing = upstreams("a1111"), upstreams("a1111")
    broken.set("fail")
    refusing.set("content")
    wide = {"sizes": ["256x256", "1024x1024"], "size_range": [256, 768], "max_steps": 200}
    server = make_server(
        channels=[broken.channel("broken"), refusing.channel("refusing")],
        models=[relayed("m-fail", "broken", **wide), relayed("m-content", "refusing", **wide)],
        demo=False,
    )
    key = server.create_key(credit="10")
    with server.client(key) as c:
        for model, status in (("m-fail", 502), ("m-content", 451)):
            yuecheng = c.post(
                "/API/AI-picture/endpoint_pic.php",
                json={"api_key": key, "model": model, "prompt": "a", "image_size": "1024x1024"},
            )
            assert yuecheng.status_code == status and not yuecheng.json()["success"]
            body = {"req_key": model, "prompt": "a", "width": 256, "height": 256}
            volc = c.post("/volcv?Action=CVProcess&Version=2022-08-31", json=body)
            assert volc.json()["code"] == (50500 if status == 502 else 50412), volc.text
            params = json.dumps({"prompt": "a", "size_id": "1:1", "model_id": model})
            task = c.post(
                f"/api/image2image?key={key}",
                files={"image": ("1.png", gradient_png(), "image/png")},
                data={"params": params},
            ).json()["task_id"]

            def failed(task=task):
                data = c.post(f"/api/v1/draw/query?key={key}", json={"task_id": task}).json()
                return data["data"]["status"] == "failed" and data["data"]

            data = until(failed, what="the aichat task")
            code = "upstream_error" if status == 502 else "content_refused"
            assert data["error"]["code"] == code, data
    assert len(broken.calls) == len(refusing.calls) == 3
    assert balance(server, key) == Decimal("10")
    audit_clean(server)
