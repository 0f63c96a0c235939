"""Running a GenerationRequest through a diffusers pipeline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from pixgate.backends.base import BackendError, BackendResult, StepCallback
from pixgate.backends.diffusers.loader import PipelineCache
from pixgate.backends.diffusers.lora import apply_loras
from pixgate.backends.diffusers.schedulers import build_scheduler, is_flow_match
from pixgate.spec.catalog import LoraSpec, ModelSpec
from pixgate.spec.request import GenerationRequest, hires_size
from pixgate.spec.samplers import find_sampler, sampler_names

DEFAULT_GPU_BATCH = 8

EngineResult = BackendResult  # the name callers of the engine knew it by


class SamplerError(BackendError, ValueError):
    """The request's sampler does not fit this model's scheduler family."""

    def __init__(self, message: str):
        super().__init__("invalid_sampler", message)


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
    reads them from storage); `loras` are the configured LoRAs by name."""

    def __init__(
        self,
        cache: PipelineCache,
        open_input: Callable[[str], Any] | None = None,
        loras: dict[str, LoraSpec] | None = None,
    ):
        self.cache = cache
        self.open_input = open_input
        self.loras = loras or {}

    def max_batch(self, spec: ModelSpec) -> int:
        """Images one forward pass may hold for this model."""
        if spec.max_batch is not None:
            return spec.max_batch
        return 1 if self.cache.device_for(spec) == "cpu" else DEFAULT_GPU_BATCH

    def generate(
        self, req: GenerationRequest, spec: ModelSpec, on_step: StepCallback | None = None
    ) -> EngineResult:
        return self.generate_batch([req], spec, on_step)[0]

    def generate_batch(
        self,
        reqs: list[GenerationRequest],
        spec: ModelSpec,
        on_step: StepCallback | None = None,
    ) -> list[EngineResult]:
        """Run requests that share a batch key (or a single request) in one forward pass.
        Every image is drawn from its own seeded generator, so an image does not depend on
        what else is in the batch."""
        import torch
        from PIL import Image

        first = reqs[0]
        if len(reqs) > 1 and any(r.batch_key() != first.batch_key() for r in reqs):
            raise ValueError("requests in a batch must share a batch key")
        base = self.cache.get_for_mode(spec, first.kind)
        apply_loras(base, first.lora, self.loras)
        pipe = with_sampler(base, first.sampler)
        seeds = [s for r in reqs for s in r.image_seeds()]
        prompts = [r.prompt for r in reqs for _ in range(r.n)]
        negatives = [r.negative_prompt or "" for r in reqs for _ in range(r.n)]
        if not any(negatives):
            negatives = None
        steps = first.steps
        kwargs: dict[str, Any] = {}
        original = mask = None
        if first.kind != "txt2img":
            if first.image is None or self.open_input is None:
                raise ValueError(f"{first.kind} needs an input image")
            original = self.open_input(first.image).convert("RGB")
            kwargs["image"] = [original.resize((first.width, first.height))] * len(seeds)
            kwargs["strength"] = strength = first.strength if first.strength is not None else 0.75
            steps = img2img_steps(steps, strength)
            if first.kind == "inpaint":  # inpaint pipelines size by width/height, not the image
                mask = self.open_input(first.mask).convert("L")
                kwargs["mask_image"] = [mask.resize((first.width, first.height))] * len(seeds)
                kwargs["width"], kwargs["height"] = first.width, first.height
        else:
            kwargs["width"], kwargs["height"] = first.width, first.height
        hires = first.hires
        hires_steps = 0
        if hires is not None:
            hires_steps = img2img_steps(hires.steps or first.steps, hires.strength)
        total = denoising_steps(steps, kwargs.get("strength"))
        if hires is not None:
            total += denoising_steps(hires_steps, hires.strength)
        progress = _Progress(on_step, total)
        start = time.perf_counter()
        with torch.inference_mode():
            images = self._call(
                pipe, prompts, negatives, seeds, steps, first.guidance, progress, kwargs
            )
            if hires is not None:
                refine = with_sampler(self.cache.get_for_mode(spec, "img2img"), first.sampler)
                size = hires_size(first.width, first.height, hires.scale)
                upscaled = [im.resize(size, Image.Resampling.LANCZOS) for im in images]
                images = self._call(
                    refine,
                    prompts,
                    negatives,
                    seeds,
                    hires_steps,
                    first.guidance,
                    progress,
                    {"image": upscaled, "strength": hires.strength},
                )
        if mask is not None:  # outside the mask, the output keeps the input's pixels
            images = [composite_outside_mask(im, original, mask) for im in images]
        seconds = time.perf_counter() - start
        results, offset = [], 0
        for r in reqs:
            results.append(EngineResult(images[offset : offset + r.n], seconds))
            offset += r.n
        return results

    @staticmethod
    def _call(
        pipe: Any,
        prompts: list[str],
        negatives: list[str] | None,
        seeds: list[int],
        steps: int,
        guidance: float,
        progress: _Progress,
        kwargs: dict[str, Any],
    ) -> list[Any]:
        import torch

        generators = [torch.Generator(device=pipe.device.type).manual_seed(s) for s in seeds]
        if "image" in kwargs and "width" not in kwargs and takes_size(pipe):
            # SD3/FLUX img2img size their output by width/height (default 1024), not the image
            width, height = kwargs["image"][0].size
            kwargs = {**kwargs, "width": width, "height": height}
        if progress.on_step is not None:
            kwargs = {**kwargs, "callback_on_step_end": progress.callback}
        out = pipe(
            prompt=prompts,
            negative_prompt=negatives,
            num_images_per_prompt=1,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="pil",
            **kwargs,
        )
        return list(out.images)


def composite_outside_mask(generated: Any, original: Any, mask: Any, feather: int = 4) -> Any:
    """Keep the original pixels outside the mask, blending over a feathered edge."""
    from PIL import Image, ImageFilter

    size = generated.size
    soft = mask.convert("L").resize(size).filter(ImageFilter.GaussianBlur(feather))
    return Image.composite(generated.convert("RGB"), original.convert("RGB").resize(size), soft)


def takes_size(pipe: Any) -> bool:
    import inspect

    return "width" in inspect.signature(pipe.__call__).parameters


def img2img_steps(steps: int, strength: float) -> int:
    """The step count to ask an img2img pass for: it runs `steps x strength` of them, so
    raise `steps` until that is at least one."""
    return max(steps, math.ceil(1 / strength))


def denoising_steps(steps: int, strength: float | None) -> int:
    """Steps a pipeline actually runs: img2img runs `steps x strength` of them."""
    if strength is None:
        return steps
    steps = img2img_steps(steps, strength)
    return max(1, min(steps, int(steps * strength)))


class _Progress:
    """Counts denoising steps across the passes of one generation (base + hires fix)."""

    def __init__(self, on_step: StepCallback | None, total: int):
        self.on_step = on_step
        self.total = total
        self.done = 0

    def callback(self, _pipe: Any, _step: int, _timestep: Any, callback_kwargs: dict) -> dict:
        self.done += 1
        assert self.on_step is not None
        self.on_step(min(self.done, self.total), self.total)
        return callback_kwargs
