"""Running a GenerationRequest through a diffusers pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pixgate.catalog import ModelSpec
from pixgate.engine.loader import PipelineCache
from pixgate.request import GenerationRequest

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (step, total); raise to stop the generation."""


@dataclass
class EngineResult:
    images: list[Any | None]  # PIL images, image i drawn from seed + i; None = not produced
    inference_seconds: float


class DiffusersEngine:
    """Synchronous: the worker calls it from its engine thread, never the event loop."""

    def __init__(self, cache: PipelineCache):
        self.cache = cache

    def generate(
        self, req: GenerationRequest, spec: ModelSpec, on_step: StepCallback | None = None
    ) -> EngineResult:
        import torch

        pipe = self.cache.get(spec)
        device = pipe.device.type
        generators = [torch.Generator(device=device).manual_seed(s) for s in req.image_seeds()]
        kwargs: dict[str, Any] = {}
        if on_step is not None:

            def _callback(_pipe, step: int, _timestep, callback_kwargs: dict) -> dict:
                on_step(step + 1, req.steps)
                return callback_kwargs

            kwargs["callback_on_step_end"] = _callback
        start = time.perf_counter()
        with torch.inference_mode():
            out = pipe(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt or None,
                width=req.width,
                height=req.height,
                num_images_per_prompt=req.n,
                num_inference_steps=req.steps,
                guidance_scale=req.guidance,
                generator=generators,
                output_type="pil",
                **kwargs,
            )
        return EngineResult(images=list(out.images), inference_seconds=time.perf_counter() - start)
