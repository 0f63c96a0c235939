"""Relayed models end to end, when upstreams fail: failover in priority order, each channel
tried at most once per request, the circuit breaker opening and a half-open probe closing
it, Retry-After honoured, a channel disabled on 401 (shown in GET /admin/channels, kept
across a restart) and enabled again by an admin, and the errors clients get (502, 504,
503, 400, 451) in each dialect, with nothing charged.

The tests share one server; each has its own group of channels (state is per channel), and
its own model `m-<group>` relayed to them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

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
from tests.upstreams import REJECT_MESSAGE, FakeUpstream

upstreams, module_upstreams = fixtures()

WIDE = {"sizes": ["256x256", "1024x1024"], "size_range": [256, 768], "max_steps": 200}
TWO = {"a": {}, "b": {}}
# group -> (channel type, response, {channel: overrides}); the first channel has the
# highest priority
GROUPS: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    "prio": ("openai", "b64", {"a": {}, "b": {}, "c": {}}),
    "once": ("openai", "b64", {"a": {}, "b": {}, "c": {}}),
    "breaker": ("openai", "b64", {"a": {"failure_threshold": 2, "cooldown_seconds": 1.5}, "b": {}}),
    "probe": ("openai", "b64", {"a": {"failure_threshold": 1, "cooldown_seconds": 1.5}, "b": {}}),
    "retry": ("openai", "b64", TWO),
    "auth": ("openai", "b64", TWO),
    "admin": ("openai", "b64", TWO),
    "e502": ("openai", "b64", TWO),
    "e504": ("openai", "b64", {"a": {"timeout_seconds": 0.3}, "b": {"timeout_seconds": 0.3}}),
    "e503": ("openai", "b64", TWO),
    "busy": ("openai", "b64", TWO),
    "reject": ("openai", "b64", TWO),
    "content": ("openai", "b64", TWO),
    "bad_image-b64": ("openai", "b64", TWO),
    "bad_image-url": ("openai", "url", TWO),
    "expiring_url-url": ("openai", "url", TWO),
    "empty-b64": ("openai", "b64", TWO),
    # a1111 takes every optional field, so every dialect reaches it
    "dialects": (
        "a1111",
        "b64",
        {"a": {"failure_threshold": 100}, "b": {"failure_threshold": 100}},
    ),
}


@dataclass
class Group:
    server: Any
    fakes: dict[str, FakeUpstream]
    name: str

    @property
    def model(self) -> str:
        return f"m-{self.name}"

    def channel(self, short: str) -> str:
        return f"{self.name}-{short}"

    def calls(self) -> dict[str, int]:
        return {short: len(fake.calls) for short, fake in self.fakes.items()}

    def view(self, admin: str) -> dict[str, dict[str, Any]]:
        """GET /admin/channels of this group's channels, by their short names."""
        shown = channels(self.server, admin)
        return {short: shown[self.channel(short)] for short in self.fakes}

    def state(self, short: str) -> str:
        """The channel's state as the server's relay worker sees it now."""
        return router(self.server).channels[self.channel(short)].state

    def runtime(self, short: str) -> Any:
        return router(self.server).channels[self.channel(short)]


@pytest.fixture(scope="module")
def shared(make_module_server, module_upstreams):
    fakes: dict[str, dict[str, FakeUpstream]] = {}
    specs, models = [], []
    for group, (type, response, wanted) in GROUPS.items():
        fakes[group] = {}
        for i, (short, overrides) in enumerate(wanted.items()):
            fake = fakes[group][short] = module_upstreams(type, response)
            priority = len(wanted) - i
            specs.append(fake.channel(f"{group}-{short}", priority=priority, **overrides))
        names = [f"{group}-{short}" for short in wanted]
        models.append(relayed(f"m-{group}", *names, **WIDE))
    server = make_module_server(channels=specs, models=models, demo=False, shutdown_grace_seconds=1)
    return server, fakes


@pytest.fixture
def use(shared):
    """use(group, **behaviours) -> Group: its fakes answering as told (else ok)."""
    server, fakes = shared

    def pick(group: str, **behaviours: str) -> Group:
        for short, fake in fakes[group].items():
            fake.set(behaviours.get(short, "ok"))
        return Group(server, fakes[group], group)

    return pick


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


# --- failover ----------------------------------------------------------------------------
def test_failover_follows_priority_and_stops_at_the_first_success(use):
    g = use("prio", a="fail")
    key = g.server.create_key(credit="10")
    admin = g.server.create_key(role="admin")
    with g.server.client(key) as c:
        r = generate(c, g.model, n=2)
    assert r.status_code == 200, r.text
    assert len(own_images(g.server, r.json())) == 2
    assert g.calls() == {"a": 1, "b": 1, "c": 0}
    view = g.view(admin)
    assert (view["a"]["last_hour"]["calls"], view["a"]["last_hour"]["ok"]) == (1, 0)
    assert (view["b"]["last_hour"]["calls"], view["b"]["last_hour"]["ok"]) == (1, 1)
    assert view["b"]["last_hour"]["images"] == 2 and view["c"]["last_hour"]["calls"] == 0
    assert view["a"]["models"] == [g.model] and view["a"]["priority"] == 3
    assert balance(g.server, key) == Decimal("9.8")
    with g.server.client(admin) as c:  # the job records the channel and every call
        user = g.server.key_row(key).user_id
        latest = c.get("/admin/jobs", params={"user": user, "limit": 1}).json()["data"][0]
        job = c.get(f"/admin/jobs/{latest['id']}").json()
        assert c.get("/admin/jobs/nope").status_code == 404
    assert job["channel"] == g.channel("b") and job["status"] == "succeeded"
    calls = job["upstream_calls"]
    assert [(x["channel"], x["outcome"]) for x in calls] == [
        (g.channel("a"), "server"),
        (g.channel("b"), "ok"),
    ]
    assert calls[0]["http_status"] == 500 and calls[0]["error"] and calls[1]["images"] == 2


def test_channels_that_failed_a_request_are_not_called_again_for_it(use):
    g = use("once", a="fail", b="fail")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 1, "b": 1, "c": 1}
        g.fakes["c"].set("fail")
        r = generate(c, g.model)
    err = error(r, 502, "upstream_error")
    assert "3 upstream calls failed" in err["message"] and "nothing was charged" in err["message"]
    assert g.calls() == {"a": 2, "b": 2, "c": 2}
    assert balance(g.server, key) == Decimal("9.9")


def test_relay_max_attempts_bounds_the_calls_of_a_request(make_server, upstreams):
    fakes = {name: upstreams() for name in "abc"}
    fakes["a"].set("fail")
    fakes["b"].set("fail")
    server = make_server(
        channels=[f.channel(n, priority=3 - i) for i, (n, f) in enumerate(fakes.items())],
        models=[relayed("m", "a", "b", "c")],
        demo=False,
        relay_max_attempts=2,
    )
    key = server.create_key(credit="10")
    with server.client(key) as c:
        error(generate(c, "m"), 502, "upstream_error")
    assert [len(f.calls) for f in fakes.values()] == [1, 1, 0]
    assert balance(server, key) == Decimal("10")


def test_breaker_opens_after_the_threshold_and_a_probe_closes_it(use):
    g = use("breaker", a="fail")
    key = g.server.create_key(credit="10")
    admin = g.server.create_key(role="admin")
    with g.server.client(key) as c:
        for _ in range(2):
            assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 2, "b": 2}
        g.fakes["a"].set("ok")
        assert generate(c, g.model).status_code == 200  # a is skipped while open
        assert g.calls() == {"a": 2, "b": 3}
        assert g.view(admin)["a"]["state"] == "open"
        until(lambda: g.state("a") == "half_open", what="the cooldown")
        assert generate(c, g.model).status_code == 200  # the probe, which succeeds
        assert g.calls() == {"a": 3, "b": 3}
        until(lambda: g.view(admin)["a"]["state"] == "closed", what="a closed")
        assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 4, "b": 3}
    assert balance(g.server, key) == Decimal("9.5")


def test_a_failed_probe_opens_the_breaker_again(use):
    g = use("probe", a="fail")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        assert generate(c, g.model).status_code == 200
        until(lambda: g.state("a") == "half_open", what="the cooldown")
        assert generate(c, g.model).status_code == 200  # the probe fails; b serves
        assert generate(c, g.model).status_code == 200  # open again: a is skipped
        assert g.calls() == {"a": 2, "b": 3}
        assert g.state("a") == "open"


def test_retry_after_is_honoured(use):
    g = use("retry")
    g.fakes["a"].set("busy", seconds=1.5)
    key = g.server.create_key(credit="10")
    admin = g.server.create_key(role="admin")
    with g.server.client(key) as c:
        assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 1, "b": 1}
        g.fakes["a"].set("ok")
        assert generate(c, g.model).status_code == 200  # a waits out its Retry-After
        assert g.calls() == {"a": 1, "b": 2}
        assert g.view(admin)["a"]["state"] == "busy"
        until(lambda: g.state("a") != "busy", timeout=5, what="1.5 s")
        assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 2, "b": 2}


def test_401_disables_the_channel_until_an_admin_enables_it(use):
    g = use("auth", a="unauthorized")
    a = g.channel("a")
    key = g.server.create_key(credit="10")
    admin = g.server.create_key(role="admin")
    with g.server.client(key) as c:
        assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 1, "b": 1}
        shown = until(lambda: (v := g.view(admin)["a"])["disabled"] and v, what="a disabled")
        assert shown["state"] == "disabled" and "credentials" in shown["disabled_reason"]
        assert g.view(admin)["b"]["state"] == "closed"
        metrics = c.get("/metrics").text  # the state gauge: 3 is disabled
        assert f'pixgate_channel_state{{channel="{a}"}} 3.0' in metrics, metrics
        assert f'pixgate_channel_requests_total{{channel="{a}",outcome="auth"}} 1.0' in metrics
        g.fakes["a"].set("ok")
        for _ in range(2):
            assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 1, "b": 3}  # disabled: never called
        # only admins see or change channels
        assert c.get("/admin/channels").status_code == 403
        assert c.post(f"/admin/channels/{a}/enable").status_code == 403
    with g.server.client(admin) as ac:
        r = ac.post(f"/admin/channels/{a}/enable")
        assert r.status_code == 200, r.text
        assert r.json()["disabled"] is False and r.json()["state"] == "closed"
        assert ac.get(f"/admin/channels/{a}").json()["disabled"] is False
        assert ac.post("/admin/channels/nope/enable").status_code == 404
    until(lambda: g.runtime("a").disabled is None, what="the worker enabling a")
    with g.server.client(key) as c:
        assert generate(c, g.model).status_code == 200
    assert g.calls() == {"a": 2, "b": 3}
    assert not g.view(admin)["a"]["disabled"]


def test_a_disabled_channel_stays_disabled_after_a_restart(make_server, upstreams, tmp_path):
    a, b = upstreams(), upstreams()
    a.set("unauthorized")
    settings = {
        "channels": [a.channel("a", priority=1), b.channel("b")],
        "models": [relayed("m", "a", "b")],
        "demo": False,
        "data_dir": tmp_path / "d",
    }
    server = make_server(**settings)
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
    until(lambda: channels(server, admin)["a"]["disabled"], what="a disabled")
    server.stop()
    a.set("ok")
    again = make_server(**settings)
    with again.client(key) as c:
        assert generate(c, "m").status_code == 200
    assert (len(a.calls), len(b.calls)) == (1, 2)
    assert channels(again, admin)["a"]["state"] == "disabled"
    audit_clean(again)


def test_admin_disable_takes_a_channel_out_and_test_calls_it(use):
    g = use("admin")
    key = g.server.create_key(credit="10")
    admin = g.server.create_key(role="admin")
    with g.server.client(admin) as ac:
        r = ac.post(f"/admin/channels/{g.channel('a')}/disable")
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert "disabled by" in r.json()["disabled_reason"]
        tested = ac.post(f"/admin/channels/{g.channel('b')}/test").json()
        assert tested["ok"] and tested["images"] == 1 and tested["model"] == g.model
        assert tested["latency_ms"] >= 0 and tested["error"] is None
        assert g.calls() == {"a": 0, "b": 1}
        until(lambda: g.runtime("a").disabled, what="the worker disabling a")
        with g.server.client(key) as c:
            assert generate(c, g.model).status_code == 200
        assert g.calls() == {"a": 0, "b": 2}
        assert balance(g.server, key) == Decimal("9.9")  # the test call cost nothing
        assert g.view(admin)["a"]["state"] == "disabled"
        # what the admin was shown at once agrees
        assert r.json()["state"] == "disabled", r.json()


# --- errors ------------------------------------------------------------------------------
def test_every_channel_failing_is_502(use):
    g = use("e502", a="fail", b="fail")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        err = error(generate(c, g.model), 502, "upstream_error")
    assert f"'{g.model}'" in err["message"] and "HTTP 500" in err["message"]
    assert g.calls() == {"a": 1, "b": 1}
    assert balance(g.server, key) == Decimal("10")
    assert g.server.key_row(key).images_reserved == 0


def test_every_channel_too_slow_is_504(use):
    g = use("e504")
    for fake in g.fakes.values():
        fake.set("slow", seconds=30)
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        err = error(generate(c, g.model), 504, "upstream_timeout")
    assert "0.3 s" in err["message"]
    assert g.calls() == {"a": 1, "b": 1}
    assert balance(g.server, key) == Decimal("10")


def test_no_channel_available_is_503_with_retry_after(use):
    g = use("e503", a="unauthorized", b="unauthorized")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        error(generate(c, g.model), 502, "upstream_error")  # both refuse the credentials
        r = generate(c, g.model)  # ... and are disabled now
    err = error(r, 503, "no_channel")
    assert int(r.headers["retry-after"]) > 0
    assert "disabled" in err["message"] and f"'{g.model}'" in err["message"]
    assert g.calls() == {"a": 1, "b": 1}
    assert balance(g.server, key) == Decimal("10")


def test_every_channel_busy_is_503_with_retry_after(use):
    g = use("busy", a="busy", b="busy")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        error(generate(c, g.model), 502, "upstream_error")
        r = generate(c, g.model)
    err = error(r, 503, "no_channel")
    assert "busy for" in err["message"] and int(r.headers["retry-after"]) > 0
    assert g.calls() == {"a": 1, "b": 1}
    assert balance(g.server, key) == Decimal("10")


def test_upstream_refusal_is_400_with_its_message_and_not_retried(use):
    g = use("reject", a="reject")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        err = error(generate(c, g.model), 400, "upstream_rejected")
    assert REJECT_MESSAGE in err["message"] and f"'{g.model}'" in err["message"]
    assert g.calls() == {"a": 1, "b": 0}
    assert balance(g.server, key) == Decimal("10")


def test_upstream_content_refusal_is_a_refusal_and_not_retried(use):
    g = use("content", a="content")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        r = generate(c, g.model)
    assert r.status_code == 400, r.text  # the OpenAI dialect's refusal
    assert r.json()["error"]["code"] == "content_policy_violation"
    assert g.calls() == {"a": 1, "b": 0}
    assert balance(g.server, key) == Decimal("10")


@pytest.mark.parametrize(
    "group", ["bad_image-b64", "bad_image-url", "expiring_url-url", "empty-b64"]
)
def test_unusable_answers_fail_over_to_the_next_channel(use, group):
    behaviour = group.split("-")[0]
    g = use(group, a=behaviour)
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        r = generate(c, g.model, n=2)
    assert r.status_code == 200, r.text
    assert len(own_images(g.server, r.json())) == 2
    assert g.calls() == {"a": 1, "b": 1}
    if group.endswith("-url") and behaviour != "empty":
        assert len(g.fakes["a"].downloads) == 2  # the relay tried the links
    assert balance(g.server, key) == Decimal("9.8")


def test_each_dialect_reports_upstream_failures_in_its_own_shape(use):
    g = use("dialects")
    key = g.server.create_key(credit="10")
    with g.server.client(key) as c:
        for behaviour, status in (("fail", 502), ("content", 451)):
            g.fakes["a"].set(behaviour)
            g.fakes["b"].set(behaviour)
            yuecheng = c.post(
                "/API/AI-picture/endpoint_pic.php",
                json={"api_key": key, "model": g.model, "prompt": "a", "image_size": "1024x1024"},
            )
            assert yuecheng.status_code == status and not yuecheng.json()["success"]
            body = {"req_key": g.model, "prompt": "a", "width": 256, "height": 256}
            volc = c.post("/volcv?Action=CVProcess&Version=2022-08-31", json=body)
            assert volc.json()["code"] == (50500 if status == 502 else 50412), volc.text
            params = json.dumps({"prompt": "a", "size_id": "1:1", "model_id": g.model})
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
    assert balance(g.server, key) == Decimal("10")
    audit_clean(g.server)
