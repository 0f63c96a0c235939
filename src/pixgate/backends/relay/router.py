"""Routing one relayed request over its model's channels.

Order: highest `priority` first; within a priority, a weighted random order (`weight`).
Skipped: channels disabled (an upstream answered 401/403), waiting out a `Retry-After`, or
whose breaker is open (a half-open breaker lets one probe through). On a channel failure
(connect error, timeout, 429, 5xx, an answer with no usable image) the next channel that
has not been tried for this request is tried, within `relay_max_attempts` calls in all and
each channel at most once. A request the upstream refused on its merits (another 4xx, or
refused content) is not retried: it ends at once. Calls to one channel are bounded by its
`max_concurrency`; further calls wait for a slot.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog
from PIL import Image

from pixgate.backends.base import BackendError, UpstreamAttempt
from pixgate.backends.relay import results
from pixgate.backends.relay.apis import adapter
from pixgate.backends.relay.apis.base import Call, Inputs, UpstreamFailure
from pixgate.backends.relay.breaker import Breaker
from pixgate.processing.fetch import IPNetwork
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.channels import ChannelSpec
from pixgate.spec.request import GenerationRequest

log = structlog.get_logger("pixgate.relay")

StateListener = Callable[[str, str, bool, str | None], None]
"""Told (channel, state, disabled, reason) whenever a channel's state changes."""


@dataclass
class ChannelRuntime:
    """One channel as this worker sees it."""

    spec: ChannelSpec
    breaker: Breaker
    slots: asyncio.Semaphore | None
    busy_until: float = 0.0  # monotonic time a Retry-After asked to wait until
    disabled: str | None = None  # why, when an upstream refused its credentials
    networks: tuple[IPNetwork, ...] | None = None  # its host's addresses, once resolved
    in_flight: int = 0

    @property
    def state(self) -> str:
        """closed | open | half_open | disabled | busy (waiting out a Retry-After)."""
        if self.disabled:
            return "disabled"
        if self.busy_until > time.monotonic():
            return "busy"
        return self.breaker.state

    def usable(self) -> bool:
        return (
            not self.disabled and self.busy_until <= time.monotonic() and self.breaker.available()
        )


@dataclass
class Routed:
    """What a relayed request produced: the images (None where one was not made), the
    channel that made them, every call tried, and the upstream cost."""

    images: list[Image.Image | None]
    channel: str
    attempts: list[UpstreamAttempt] = field(default_factory=list)
    cost_minor: int = 0


def weighted_order(channels: list[ChannelRuntime], rng: random.Random) -> list[ChannelRuntime]:
    """Highest priority first; within a priority a weighted random order (each next pick
    drawn with probability weight / remaining weights)."""
    out: list[ChannelRuntime] = []
    for priority in sorted({c.spec.priority for c in channels}, reverse=True):
        group = [c for c in channels if c.spec.priority == priority]
        while group:
            total = sum(c.spec.weight for c in group)
            point = rng.uniform(0, total)
            for i, c in enumerate(group):
                point -= c.spec.weight
                if point <= 0 or i == len(group) - 1:
                    out.append(group.pop(i))
                    break
    return out


class Router:
    def __init__(
        self,
        channels: list[ChannelSpec],
        max_attempts: int,
        allow: tuple[IPNetwork, ...] = (),
        rng: random.Random | None = None,
    ):
        self.channels = {
            c.name: ChannelRuntime(
                c,
                Breaker(c.failure_threshold, c.failure_window_seconds, c.cooldown_seconds),
                asyncio.Semaphore(c.max_concurrency) if c.max_concurrency else None,
            )
            for c in channels
        }
        self.max_attempts = max_attempts
        self.allow = allow
        self.rng = rng or random.Random()
        self.listeners: list[StateListener] = []

    # --- state ---------------------------------------------------------------------------
    def _changed(self, runtime: ChannelRuntime, before: str) -> None:
        if runtime.state != before:
            for listener in self.listeners:
                listener(runtime.spec.name, runtime.state, bool(runtime.disabled), runtime.disabled)

    def set_disabled(self, name: str, reason: str | None) -> None:
        """Disable a channel (with the reason) or enable it again (None)."""
        runtime = self.channels.get(name)
        if runtime is None:
            return
        before = runtime.state
        runtime.disabled = reason
        if reason is None:
            runtime.breaker.success()
        self._changed(runtime, before)

    # --- one request ---------------------------------------------------------------------
    def _next(self, names: list[str], tried: set[str]) -> ChannelRuntime | None:
        candidates = [
            self.channels[n] for n in names if n not in tried and self.channels[n].usable()
        ]
        for runtime in weighted_order(candidates, self.rng):
            if runtime.breaker.acquire():
                return runtime
        return None

    def _unavailable(self, names: list[str], tried: set[str]) -> str:
        """Why the untried channels could not be used, without their names (clients read
        this; the admin view has the names)."""
        parts = []
        for name in names:
            if name in tried:
                continue
            runtime = self.channels[name]
            state = runtime.state
            if state == "busy":
                state = f"busy for {runtime.busy_until - time.monotonic():.0f} s"
            elif state == "open":
                state = f"failing, retried in {runtime.breaker.open_for():.0f} s"
            elif state == "half_open":
                state = "being probed"
            parts.append(state)
        return ", ".join(parts) or "none left to try"

    async def route(
        self,
        http: httpx.AsyncClient,
        spec: ModelSpec,
        req: GenerationRequest,
        inputs: Inputs,
        on_dispatch: Callable[[], None] | None = None,
    ) -> Routed:
        names = list(spec.channels)
        tried: set[str] = set()
        attempts: list[UpstreamAttempt] = []
        failures: list[UpstreamFailure] = []
        while len(attempts) < self.max_attempts:
            runtime = self._next(names, tried)
            if runtime is None:
                break
            tried.add(runtime.spec.name)
            if on_dispatch is not None:
                on_dispatch()
            try:
                images, attempt = await self._call(runtime, http, spec, req, inputs)
            except _Failed as failed:
                attempts.append(failed.attempt)
                failures.append(failed.failure)
                if not failed.failure.retryable and failed.failure.kind != "auth":
                    code = (
                        "content_refused"
                        if failed.failure.kind == "content"
                        else "upstream_rejected"
                    )
                    raise BackendError(code, failed.failure.message, attempts) from None
                continue
            attempts.append(attempt)
            padded: list[Image.Image | None] = [*images, *[None] * (req.n - len(images))]
            return Routed(padded[: req.n], runtime.spec.name, attempts, attempt.cost_minor)
        raise self._exhausted(spec, names, tried, attempts, failures)

    def _exhausted(
        self,
        spec: ModelSpec,
        names: list[str],
        tried: set[str],
        attempts: list[UpstreamAttempt],
        failures: list[UpstreamFailure],
    ) -> BackendError:
        if not failures:
            why = self._unavailable(names, tried)
            return BackendError(
                "no_channel", f"no channel of model {spec.name} is available ({why})", attempts
            )
        calls = "call" if len(attempts) == 1 else "calls"
        summary = f"{len(attempts)} upstream {calls} failed: " + "; ".join(
            f.message for f in failures
        )
        if all(f.kind == "timeout" for f in failures):
            return BackendError("upstream_timeout", summary, attempts)
        return BackendError("upstream_error", summary, attempts)

    async def _call(
        self,
        runtime: ChannelRuntime,
        http: httpx.AsyncClient,
        spec: ModelSpec,
        req: GenerationRequest,
        inputs: Inputs,
    ) -> tuple[list[Image.Image], UpstreamAttempt]:
        """One call to one channel (waiting for a slot first); the breaker, Retry-After and
        disabling learn from its outcome."""
        channel = runtime.spec
        if runtime.networks is None:
            runtime.networks = await results.channel_networks(channel)
        policy = results.download_policy(self.allow + runtime.networks, channel.timeout_seconds)
        slots = runtime.slots
        if slots is not None:
            await slots.acquire()
        before = runtime.state
        runtime.in_flight += 1
        start = time.perf_counter()
        try:
            raw = await adapter(channel.type)(Call(http, channel, spec.upstream_name, req, inputs))
            images, problems = await results.materialize(raw, policy)
        except UpstreamFailure as failure:
            failure.message = _scrub(failure.message, channel)
            attempt = UpstreamAttempt(
                channel.name,
                failure.kind,
                _ms(start),
                failure.status,
                error=failure.message,
            )
            self._learn(runtime, failure)
            self._changed(runtime, before)
            log.info(
                "upstream call failed",
                channel=channel.name,
                kind=failure.kind,
                status=failure.status,
                error=failure.message,
            )
            raise _Failed(failure, attempt) from None
        except BaseException:  # cancelled: no verdict on the channel
            runtime.breaker.release()
            raise
        finally:
            runtime.in_flight -= 1
            if slots is not None:
                slots.release()
        runtime.breaker.success()
        self._changed(runtime, before)
        images = images[: req.n]
        error = "; ".join(_scrub(p, channel) for p in problems) or None
        return images, UpstreamAttempt(
            channel.name,
            "ok",
            _ms(start),
            200,
            len(images),
            len(images) * channel.upstream_price_minor,
            error,
        )

    def _learn(self, runtime: ChannelRuntime, failure: UpstreamFailure) -> None:
        if failure.kind == "auth":
            runtime.disabled = f"the upstream refused the credentials: {failure.message}"
            log.warning("channel disabled", channel=runtime.spec.name, reason=runtime.disabled)
        elif failure.retryable:
            runtime.breaker.failure()
            if failure.retry_after:
                runtime.busy_until = max(runtime.busy_until, time.monotonic() + failure.retry_after)
        else:  # the upstream answered, on the request's merits: the channel is fine
            runtime.breaker.success()


class _Failed(Exception):
    def __init__(self, failure: UpstreamFailure, attempt: UpstreamAttempt):
        self.failure = failure
        self.attempt = attempt


def _ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)


def _scrub(text: str, channel: ChannelSpec) -> str:
    """`text` with the channel's credentials replaced, should an upstream echo one."""
    for secret in channel.secrets():
        text = text.replace(secret, "**********")
    return text
