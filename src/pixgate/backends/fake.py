"""The fake backend: solid-colour images, for tests and benchmarks.

A `[[models]]` entry with `source = "fake:..."` is served by this backend. It needs no
torch and no weights, takes the time it is told to, and fails where it is told to, so tests
of admission, billing, queueing and the dialects run in milliseconds, and benchmarks of the
server measure the server rather than a model.

Each image is one colour derived from the request's prompt and the image's seed: different
requests differ, the same request gives the same bytes again. Images have the size the
engine would make (width x height, or the hires-fix size); the worker's post chain then
upscales, marks and encodes them as it does real ones. Input images (img2img, inpaint) are
not looked at.

The source takes comma-separated `key=value` options after `fake:` (none: `fake:`):

- `delay=SECONDS`: sleep per denoising step of a batch (one forward pass), calling the
  step callback after each; default 0.
- `image_delay=SECONDS`: sleep per image of a batch, after the steps; default 0.
- `steps=N`: run N steps whatever the request asks (1-1000); default: the request's.
- `fail_every=K`: the K-th, 2K-th, ... image of each request is not produced (a safety
  filter or a per-image failure): it is neither stored nor charged. 1: no image is made.
- `error=CODE`: every batch fails with this job error code (`generation_failed`,
  `model_unavailable`, `invalid_sampler`, `invalid_lora`), after the steps.

Example: `source = "fake:delay=0.05,fail_every=2"`. Unknown options, repeated options and
bad values are refused when a worker starts (`pixgate.backends.check_catalog`), naming the
model and the option. Batching follows the model's `max_batch` (1 when unset, as on a CPU).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, get_args

from pixgate.backends.base import BackendError, BackendErrorCode, BackendResult, StepCallback
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest, hires_size

if TYPE_CHECKING:
    from pixgate.settings import Settings

PREFIX = "fake:"
ERROR_CODES: tuple[str, ...] = get_args(BackendErrorCode)


class FakeOptionsError(ValueError):
    """A `fake:` source that does not parse; the message names the source and option."""


@dataclass(frozen=True)
class FakeOptions:
    delay: float = 0.0
    image_delay: float = 0.0
    steps: int | None = None
    fail_every: int | None = None
    error: BackendErrorCode | None = None


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 <= seconds <= 3600:  # also refuses nan and inf
        raise ValueError
    return seconds


def _count(value: str, high: int) -> int:
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise ValueError
    return int(value)


def _error(value: str) -> str:
    if value not in ERROR_CODES:
        raise ValueError
    return value


# option -> (parser, what it takes, for the error message)
_OPTIONS: dict[str, tuple[Any, str]] = {
    "delay": (_seconds, "seconds from 0 to 3600"),
    "image_delay": (_seconds, "seconds from 0 to 3600"),
    "steps": (lambda v: _count(v, 1000), "an integer from 1 to 1000"),
    "fail_every": (lambda v: _count(v, 1000), "an integer from 1 to 1000"),
    "error": (_error, "one of " + ", ".join(ERROR_CODES)),
}


@lru_cache(maxsize=64)
def parse_source(source: str) -> FakeOptions:
    """`fake:key=value,...` -> its options, or FakeOptionsError saying what is wrong."""
    if not source.startswith(PREFIX):
        raise FakeOptionsError(f"fake backend source {source!r} must start with {PREFIX!r}")
    body = source[len(PREFIX) :].strip()
    values: dict[str, Any] = {}
    for item in body.split(",") if body else []:
        key, sep, raw = (part.strip() for part in item.partition("="))
        if key not in _OPTIONS:
            known = ", ".join(_OPTIONS)
            raise FakeOptionsError(
                f"fake backend source {source!r}: unknown option {key!r}; options: {known}"
            )
        parse, takes = _OPTIONS[key]
        if key in values:
            raise FakeOptionsError(f"fake backend source {source!r}: {key} is given twice")
        try:
            if not sep:
                raise ValueError
            values[key] = parse(raw)
        except ValueError:
            raise FakeOptionsError(
                f"fake backend source {source!r}: {key} must be {takes}, got {raw!r}"
            ) from None
    return FakeOptions(**values)


def colour(prompt: str, seed: int) -> tuple[int, int, int]:
    """The colour of the image drawn for `prompt` from `seed`."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return digest[0], digest[1], digest[2]


def image_size(req: GenerationRequest) -> tuple[int, int]:
    """The size the engine makes (before the worker's upscaling)."""
    if req.hires is not None:
        return hires_size(req.width, req.height, req.hires.scale)
    return req.width, req.height


class FakeBackend:
    """Serves every `fake:` model of a worker; each model's options come from its source."""

    def max_batch(self, spec: ModelSpec) -> int:
        return spec.max_batch or 1

    def generate_batch(
        self,
        reqs: list[GenerationRequest],
        spec: ModelSpec,
        on_step: StepCallback | None = None,
    ) -> list[BackendResult]:
        from PIL import Image

        options = parse_source(spec.source)
        start = time.perf_counter()
        total = options.steps or reqs[0].steps
        for step in range(1, total + 1):
            if options.delay:
                time.sleep(options.delay)
            if on_step is not None:
                on_step(step, total)
        if options.error is not None:
            raise BackendError(options.error, f"injected failure ({spec.source})")
        if options.image_delay:
            time.sleep(options.image_delay * sum(r.n for r in reqs))
        every = options.fail_every
        results = []
        for req in reqs:
            size = image_size(req)
            images: list[Any | None] = [
                None
                if every is not None and (i + 1) % every == 0
                else Image.new("RGB", size, colour(req.prompt, seed))
                for i, seed in enumerate(req.image_seeds())
            ]
            results.append(BackendResult(images, time.perf_counter() - start))
        return results

    def preload(self, specs: Sequence[ModelSpec]) -> None:
        """Nothing to load; the options were checked when the worker was made."""

    def close(self) -> None:
        """Holds nothing."""


def create(settings: Settings, storage: Any = None) -> FakeBackend:
    """The registry's entry point (pixgate.backends)."""
    return FakeBackend()
