"""The Backend seam: what a worker calls to turn a batch of compatible requests into
images.

One small protocol, like httpx's transport: the worker claims jobs, hands their requests to
the backend its model's `source` picks (diffusers, the fake, later the relay), and gets one
result per request back, with one entry per image (None where that image could not be
made). Failures a client should hear about carry a stable job error code in
`BackendError`, so the worker maps them without knowing any backend's own exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (step, total). It may raise to stop the
generation (the worker does, when every job of the batch was cancelled); a backend lets
that exception through unchanged."""

BackendErrorCode = Literal[
    "model_unavailable",
    "invalid_sampler",
    "invalid_lora",
    "generation_failed",
    # the relay backend's (pixgate.backends.relay): every channel failed (502), every call
    # timed out (504), no channel could be tried (503), the upstream refused the request
    # itself (400, with its message), or refused its content (451)
    "upstream_error",
    "upstream_timeout",
    "no_channel",
    "upstream_rejected",
    "content_refused",
]


@dataclass(frozen=True)
class UpstreamAttempt:
    """One call a relayed job made to an upstream channel: `outcome` is `ok` or the
    failure kind (connect, timeout, busy, server, bad_response, auth, rejected, content)."""

    channel: str
    outcome: str
    latency_ms: int
    http_status: int | None = None
    images: int = 0
    cost_minor: int = 0
    error: str | None = None


class BackendError(Exception):
    """A generation that cannot run, with the job error code it fails with: the model
    cannot be loaded or is not served here (`model_unavailable`), the request's sampler or
    LoRA does not fit the loaded model (`invalid_sampler`, `invalid_lora`: found only once
    it is loaded), or anything else a backend reports on purpose (`generation_failed`)."""

    def __init__(
        self,
        code: BackendErrorCode,
        message: str,
        attempts: Sequence[UpstreamAttempt] = (),
    ):
        super().__init__(message)
        self.code: BackendErrorCode = code
        self.message = message
        self.attempts = list(attempts)  # a relayed job's upstream calls, all failed


@dataclass
class BackendResult:
    """What one request of a batch produced: image i was drawn from seed + i; None where
    that image could not be produced (it is neither stored nor charged)."""

    images: list[Any | None]  # PIL images
    inference_seconds: float
    # relayed jobs: the channel that made the images and every upstream call made (each
    # with its cost)
    channel: str | None = None
    attempts: list[UpstreamAttempt] = field(default_factory=list)


@runtime_checkable
class Backend(Protocol):
    """Synchronous: the worker calls it from its engine thread, never the event loop, one
    batch at a time."""

    def max_batch(self, spec: ModelSpec) -> int:
        """Images one call of `generate_batch` may hold for this model (dynamic batching
        claims compatible queued jobs up to this)."""
        ...

    def generate_batch(
        self,
        reqs: list[GenerationRequest],
        spec: ModelSpec,
        on_step: StepCallback | None = None,
    ) -> list[BackendResult]:
        """One result per request, in order. The requests share a batch key (or there is
        one). Raises BackendError for a failure of the whole batch."""
        ...

    def preload(self, specs: Sequence[ModelSpec]) -> None:
        """Make the first requests of these models fast (build, download or load them),
        the first spec first; failures are logged, not raised: they come back per job."""
        ...

    def close(self) -> None:
        """Release what the backend holds (loaded pipelines, connections)."""
        ...


ProgressCallback = Callable[[float], None]


@runtime_checkable
class AsyncBackend(Protocol):
    """A backend whose work is waiting on the network (the relay): the worker runs many of
    its calls at once on the event loop, one job per call, instead of one batch at a time
    on the engine thread. Cancelling the coroutine abandons the call."""

    async def generate(
        self, req: GenerationRequest, spec: ModelSpec, progress: ProgressCallback
    ) -> BackendResult:
        """The images of one request (raise BackendError when none can be made)."""
        ...

    async def aclose(self) -> None:
        """Close connections; called on the loop that made them."""
        ...
