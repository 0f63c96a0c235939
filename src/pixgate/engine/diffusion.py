"""Running a GenerationRequest through a diffusers pipeline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pixgate.catalog import ModelSpec
from pixgate.engine.loader import PipelineCache
from pixgate.engine.samplers import build_scheduler, find_sampler, is_flow_match, sampler_names
from pixgate.request import GenerationRequest

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (step, total); raise to stop the generation."""


@dataclass
class EngineResult:
    images: list[Any | None]  # PIL images, image i drawn from seed + i; None = not produced
    inference_seconds: float


class SamplerError(ValueError):
    """The request's sampler does not fit this model's scheduler family."""


def with_sampler(pipe: Any, name: str | None) -> Any:
    """The pipeline with the named sampler: a new pipeline object sharing every module
    except its own scheduler, so concurrent requests never see each other's sampler."""
    if name is None:
        return pipe
    flow = is_flow_match(pipe.scheduler.config)
    sampler = find_sampler(name, flow_match=flow)
    if sampler is None:
        family = "flow-matching" if flow else "diffusion"
        raise SamplerError(
            f"sampler {name!r} does not fit this {family} model; use one of: "
            + ", ".join(sampler_names(flow_match=flow))
        )
    scheduler = build_scheduler(sampler, pipe.scheduler.config)
    variant = type(pipe)(**{**pipe.components, "scheduler": scheduler})
    variant.set_progress_bar_config(disable=True)
    return variant


def for_mode(pipe: Any, kind: str) -> Any:
    """The pipeline for `kind`, sharing the loaded modules (no second copy of weights)."""
    if kind == "txt2img":
        return pipe
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    auto = AutoPipelineForInpainting if kind == "inpaint" else AutoPipelineForImage2Image
    derived = auto.from_pipe(pipe)
    derived.set_progress_bar_config(disable=True)
    return derived


class DiffusersEngine:
    """Synchronous: the worker calls it from its engine thread, never the event loop.

    `open_input` turns a request's stored input-image path into a PIL image (the worker
    reads them from storage)."""

    def __init__(self, cache: PipelineCache, open_input: Callable[[str], Any] | None = None):
        self.cache = cache
        self.open_input = open_input

    def generate(
        self, req: GenerationRequest, spec: ModelSpec, on_step: StepCallback | None = None
    ) -> EngineResult:
        import torch

        pipe = with_sampler(self.cache.get_for_mode(spec, req.kind), req.sampler)
        device = pipe.device.type
        generators = [torch.Generator(device=device).manual_seed(s) for s in req.image_seeds()]
        kwargs: dict[str, Any] = {}
        if on_step is not None:

            def _callback(_pipe, step: int, _timestep, callback_kwargs: dict) -> dict:
                on_step(step + 1, req.steps)
                return callback_kwargs

            kwargs["callback_on_step_end"] = _callback
        original = mask = None
        steps = req.steps
        if req.kind != "txt2img":
            if req.image is None or self.open_input is None:
                raise ValueError(f"{req.kind} needs an input image")
            original = self.open_input(req.image).convert("RGB")
            kwargs["image"] = original.resize((req.width, req.height))
            kwargs["strength"] = strength = req.strength if req.strength is not None else 0.75
            # img2img runs steps x strength denoising steps; make that at least one
            steps = max(steps, math.ceil(1 / strength))
            if req.kind == "inpaint":  # inpaint pipelines size by width/height, not the image
                mask = self.open_input(req.mask).convert("L")
                kwargs["mask_image"] = mask.resize((req.width, req.height))
                kwargs["width"], kwargs["height"] = req.width, req.height
        else:
            kwargs["width"], kwargs["height"] = req.width, req.height
        start = time.perf_counter()
        with torch.inference_mode():
            out = pipe(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt or None,
                num_images_per_prompt=req.n,
                num_inference_steps=steps,
                guidance_scale=req.guidance,
                generator=generators,
                output_type="pil",
                **kwargs,
            )
        images = list(out.images)
        if mask is not None:  # outside the mask, the output keeps the input's pixels
            from pixgate.inputs import composite_outside_mask

            images = [composite_outside_mask(im, original, mask) for im in images]
        return EngineResult(images=images, inference_seconds=time.perf_counter() - start)
