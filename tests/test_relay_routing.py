"""The relay router and circuit breaker on their own: channel order, failover that never
retries a channel that failed the request, the retry budget, errors that are not retried,
disabling on 401/403, Retry-After, per-channel concurrency and partial results. The
channel types are replaced by scripted coroutines; tests/test_relay.py runs the same
paths over real HTTP."""

from __future__ import annotations

import asyncio
import functools
import io
import random
from collections import Counter

import pytest
from PIL import Image

from pixgate.backends import BackendError
from pixgate.backends.relay import router as router_module
from pixgate.backends.relay.apis.base import Call, Inputs, UpstreamFailure, UpstreamImage
from pixgate.backends.relay.breaker import Breaker
from pixgate.backends.relay.router import Router, weighted_order
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.channels import ChannelSpec
from pixgate.spec.request import GenerationRequest


def sync(test):
    """Run an async test function on a fresh event loop (as the suite does elsewhere)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def png(colour=(200, 30, 30), size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


PNG = png()


def channel(name: str, **fields) -> ChannelSpec:
    return ChannelSpec(
        name=name, type="openai", base_url="http://127.0.0.1:9", api_key="k", **fields
    )


def model(*names: str) -> ModelSpec:
    return ModelSpec(
        name="relayed", channels=list(names), sizes=["256x256"], default_size="256x256"
    )


def request(n: int = 1) -> GenerationRequest:
    return GenerationRequest(
        model="relayed", prompt="p", width=256, height=256, n=n, seed=1, steps=4, guidance=7
    )


class Script:
    """Per channel name, what its calls do: a list of outcomes used in turn (the last one
    repeats): an int = that many images, an UpstreamFailure = raised, a float = sleep."""

    def __init__(self, **outcomes):
        self.outcomes = {
            name: list(v) if isinstance(v, list) else [v] for name, v in outcomes.items()
        }
        self.calls: list[str] = []
        self.in_flight = Counter()
        self.max_in_flight = Counter()

    async def __call__(self, call: Call) -> list[UpstreamImage]:
        name = call.channel.name
        self.calls.append(name)
        queue = self.outcomes[name]
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        self.in_flight[name] += 1
        self.max_in_flight[name] = max(self.max_in_flight[name], self.in_flight[name])
        try:
            if isinstance(outcome, float):
                await asyncio.sleep(outcome)
                outcome = 1
            if isinstance(outcome, UpstreamFailure):
                raise outcome
            return [UpstreamImage(data=PNG) for _ in range(outcome)]
        finally:
            self.in_flight[name] -= 1


@pytest.fixture
def script(monkeypatch):
    def install(**outcomes) -> Script:
        s = Script(**outcomes)
        monkeypatch.setattr(router_module, "adapter", lambda _type: s)
        return s

    return install


def route(router: Router, spec: ModelSpec, n: int = 1):
    return router.route(None, spec, request(n), Inputs())  # type: ignore[arg-type]


def fail(kind="server", status=500, retry_after=None) -> UpstreamFailure:
    return UpstreamFailure(kind, f"HTTP {status}: boom", status, retry_after)


# --- order -------------------------------------------------------------------------------
def test_higher_priority_first_and_weights_share_within_a_priority():
    rng = random.Random(7)
    high = channel("high", priority=10, weight=0.01)
    a, b = channel("a", weight=3), channel("b", weight=1)
    router = Router([high, a, b], 3, rng=rng)
    runtimes = list(router.channels.values())
    firsts = Counter()
    for _ in range(4000):
        order = [r.spec.name for r in weighted_order(runtimes, rng)]
        assert order[0] == "high"
        firsts[order[1]] += 1
    assert 0.70 < firsts["a"] / 4000 < 0.80  # weight 3 of 4


# --- the breaker -------------------------------------------------------------------------
def test_breaker_opens_after_threshold_within_window_then_one_probe_decides():
    now = [0.0]
    breaker = Breaker(threshold=3, window=10, cooldown=30, clock=lambda: now[0])
    breaker.failure()
    now[0] = 11  # the first failure left the window
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.acquire()
    now[0] = 41
    assert breaker.state == "half_open"
    assert breaker.acquire() and not breaker.acquire()  # one probe at a time
    breaker.failure()  # the probe failed: open for another cooldown
    assert breaker.state == "open"
    now[0] = 72
    assert breaker.acquire()
    breaker.success()
    assert breaker.state == "closed" and breaker.acquire() and breaker.acquire()


# --- failover ----------------------------------------------------------------------------
@sync
async def test_failover_tries_each_channel_once_and_keeps_every_attempt(script):
    s = script(a=fail(), b=fail(kind="timeout", status=None), c=1)
    router = Router([channel("a", priority=3), channel("b", priority=2), channel("c")], 3)
    routed = await route(router, model("a", "b", "c"))
    assert s.calls == ["a", "b", "c"]
    assert routed.channel == "c" and len(routed.images) == 1
    assert [a.outcome for a in routed.attempts] == ["server", "timeout", "ok"]


@sync
async def test_the_retry_budget_bounds_calls_and_no_channel_is_tried_twice(script):
    s = script(a=fail(), b=fail(), c=fail(), d=1)
    names = ["a", "b", "c", "d"]
    router = Router([channel(n, priority=-i) for i, n in enumerate(names)], 3)
    with pytest.raises(BackendError) as caught:
        await route(router, model(*names))
    assert s.calls == ["a", "b", "c"]  # d never reached: 3 attempts in all
    assert caught.value.code == "upstream_error" and len(caught.value.attempts) == 3
    # a one-channel model: one call, never the same failing channel again
    s = script(a=fail())
    with pytest.raises(BackendError):
        await route(Router([channel("a")], 3), model("a"))
    assert s.calls == ["a"]


@sync
async def test_all_timeouts_are_a_504_and_nothing_usable_a_503(script):
    script(north=fail(kind="timeout", status=None), south=fail(kind="timeout", status=None))
    router = Router([channel("north"), channel("south")], 3)
    with pytest.raises(BackendError) as caught:
        await route(router, model("north", "south"))
    assert caught.value.code == "upstream_timeout"
    router.set_disabled("north", "test")
    router.set_disabled("south", "test")
    with pytest.raises(BackendError) as caught:
        await route(router, model("north", "south"))
    assert caught.value.code == "no_channel" and caught.value.attempts == []
    message = caught.value.message
    assert "north" not in message and "south" not in message  # clients see no channel names


@sync
async def test_a_request_refused_on_its_merits_is_not_retried(script):
    s = script(a=fail(kind="rejected", status=400), b=1)
    router = Router([channel("a", priority=1), channel("b")], 3)
    with pytest.raises(BackendError) as caught:
        await route(router, model("a", "b"))
    assert caught.value.code == "upstream_rejected" and "boom" in caught.value.message
    s = script(a=fail(kind="content", status=200), b=1)
    with pytest.raises(BackendError) as caught:
        await route(router, model("a", "b"))
    assert caught.value.code == "content_refused" and s.calls == ["a"]
    assert router.channels["a"].state == "closed"  # the channel itself is fine


@sync
async def test_401_disables_the_channel_and_fails_over(script):
    changes = []
    s = script(a=fail(kind="auth", status=401), b=1)
    router = Router([channel("a", priority=1), channel("b")], 3)
    router.listeners.append(lambda *change: changes.append(change))
    routed = await route(router, model("a", "b"))
    assert routed.channel == "b"
    assert router.channels["a"].state == "disabled"
    assert changes[0][:3] == ("a", "disabled", True)
    await route(router, model("a", "b"))
    assert s.calls == ["a", "b", "b"]  # a is no longer tried
    router.set_disabled("a", None)  # the admin enabled it again
    assert router.channels["a"].state == "closed"


@sync
async def test_retry_after_skips_the_channel_until_it_passes(script):
    s = script(a=[fail(kind="busy", status=429, retry_after=0.3), 1], b=1)
    router = Router([channel("a", priority=1), channel("b")], 3)
    assert (await route(router, model("a", "b"))).channel == "b"
    assert router.channels["a"].state == "busy"
    assert (await route(router, model("a", "b"))).channel == "b"
    await asyncio.sleep(0.35)
    assert (await route(router, model("a", "b"))).channel == "a"
    assert s.calls == ["a", "b", "b", "a"]


@sync
async def test_breaker_skips_a_failing_channel_then_probes_it(script):
    s = script(a=[fail(), fail(), fail(), 1], b=1)
    router = Router(
        [channel("a", priority=1, failure_threshold=3, cooldown_seconds=0.3), channel("b")], 3
    )
    for _ in range(3):
        assert (await route(router, model("a", "b"))).channel == "b"
    assert router.channels["a"].state == "open"
    await route(router, model("a", "b"))
    assert s.calls[-1] == "b" and s.calls.count("a") == 3  # skipped while open
    await asyncio.sleep(0.35)
    assert (await route(router, model("a", "b"))).channel == "a"  # the probe succeeded
    assert router.channels["a"].state == "closed"


@sync
async def test_max_concurrency_queues_calls_instead_of_failing_them(script):
    s = script(a=0.05)
    router = Router([channel("a", max_concurrency=2)], 3)
    results = await asyncio.gather(*(route(router, model("a")) for _ in range(8)))
    assert len(results) == 8 and s.max_in_flight["a"] == 2


@sync
async def test_fewer_images_than_asked_is_a_partial_result(script):
    script(a=2)
    routed = await route(Router([channel("a", upstream_price="0.05")], 3), model("a"), n=4)
    assert [img is not None for img in routed.images] == [True, True, False, False]
    assert routed.cost_minor == 2 * 500  # upstream price counted per image received


@sync
async def test_bad_images_fail_over_and_credentials_never_reach_messages(script, monkeypatch):
    secret = "sk-very-secret-value"

    async def echo_secret(call):
        raise UpstreamFailure("server", f"HTTP 500: invalid key {secret}", 500)

    good = Script(b=1)

    async def adapter_for(call):
        if call.channel.name == "a":
            return [UpstreamImage(data=b"definitely not an image")]
        if call.channel.name == "c":
            return await echo_secret(call)
        return await good(call)

    monkeypatch.setattr(router_module, "adapter", lambda _type: adapter_for)
    router = Router(
        [
            channel("a", priority=2),
            ChannelSpec(name="c", type="openai", base_url="http://x", api_key=secret, priority=1),
            channel("b"),
        ],
        3,
    )
    routed = await route(router, model("a", "c", "b"))
    assert routed.channel == "b"
    assert [a.outcome for a in routed.attempts] == ["bad_response", "server", "ok"]
    assert all(secret not in (a.error or "") for a in routed.attempts)


def test_every_status_maps_to_the_failure_the_router_acts_on():
    import httpx

    from pixgate.backends.relay.apis.base import failure_for_status

    def kind(status, headers=None):
        failure = failure_for_status(httpx.Response(status, headers=headers, json={}))
        return failure and (failure.kind, failure.retry_after)

    assert kind(200) is None
    assert kind(401) == ("auth", None) and kind(403) == ("auth", None)
    assert kind(429, {"Retry-After": "7"}) == ("busy", 7.0)
    assert kind(503) == ("server", None) and kind(500) == ("server", None)
    assert kind(400) == ("rejected", None) and kind(422) == ("rejected", None)
    assert kind(451) == ("content", None)
