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
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (step, total). It may raise to stop the
generation (the worker does, when every job of the batch was cancelled); a backend lets
that exception through unchanged."""

BackendErrorCode = Literal[
    "model_unavailable", "invalid_sampler", "invalid_lora", "generation_failed"
]


class BackendError(Exception):
    """A generation that cannot run, with the job error code it fails with: the model
    cannot be loaded or is not served here (`model_unavailable`), the request's sampler or
    LoRA does not fit the loaded model (`invalid_sampler`, `invalid_lora`: found only once
    it is loaded), or anything else a backend reports on purpose (`generation_failed`)."""

    def __init__(self, code: BackendErrorCode, message: str):
        super().__init__(message)
        self.code: BackendErrorCode = code
        self.message = message


@dataclass
class BackendResult:
    """What one request of a batch produced: image i was drawn from seed + i; None where
    that image could not be produced (it is neither stored nor charged)."""

    images: list[Any | None]  # PIL images
    inference_seconds: float


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
