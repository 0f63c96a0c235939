"""Sampler names as AUTOMATIC1111 users write them, mapped to diffusers schedulers.

The mapping follows diffusers' own table of A1111 equivalents. Names are matched without
regard to case, spacing or parentheses, so `DPM++ 2M SDE (Karras)`, `dpm++ 2m sde karras`
and `DPM++ 2M SDE Karras` are the same sampler. A scheduler is built per request from the
pipeline's own scheduler config: the shared pipeline is never mutated.

This module does not import torch or diffusers until a scheduler is built, so API nodes
can validate sampler names cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    name: str  # the canonical A1111 spelling
    scheduler: str  # diffusers class name
    options: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # an optional Python package the scheduler imports


def _variants(name: str, scheduler: str, **options: Any) -> list[Sampler]:
    """A sampler and its Karras-sigmas twin."""
    return [
        Sampler(name, scheduler, options),
        Sampler(f"{name} Karras", scheduler, {**options, "use_karras_sigmas": True}),
    ]


SAMPLERS: list[Sampler] = [
    Sampler("Euler", "EulerDiscreteScheduler"),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    *_variants("LMS", "LMSDiscreteScheduler"),
    Sampler("Heun", "HeunDiscreteScheduler"),
    *_variants("DPM2", "KDPM2DiscreteScheduler"),
    *_variants("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    *_variants("DPM++ 2M", "DPMSolverMultistepScheduler"),
    *_variants("DPM++ 2M SDE", "DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++"),
    *_variants("DPM++ 2S a", "DPMSolverSinglestepScheduler"),
    *[
        Sampler(s.name, s.scheduler, s.options, needs="torchsde")
        for s in _variants("DPM++ SDE", "DPMSolverSDEScheduler")
    ],
    Sampler("DDIM", "DDIMScheduler"),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("DEIS", "DEISMultistepScheduler"),
]

# Flow-matching models (SD3, FLUX) have their own schedulers; only these names fit them.
FLOW_MATCH_SAMPLERS: list[Sampler] = [
    Sampler("Euler", "FlowMatchEulerDiscreteScheduler"),
    Sampler("Heun", "FlowMatchHeunDiscreteScheduler"),
]


def _key(name: str) -> str:
    return re.sub(r"[\s()_-]+", "", name).lower()


_BY_KEY = {_key(s.name): s for s in SAMPLERS}
_FLOW_BY_KEY = {_key(s.name): s for s in FLOW_MATCH_SAMPLERS}


def sampler_names(flow_match: bool = False) -> list[str]:
    return [s.name for s in (FLOW_MATCH_SAMPLERS if flow_match else SAMPLERS)]


def find_sampler(name: str, flow_match: bool = False) -> Sampler | None:
    return (_FLOW_BY_KEY if flow_match else _BY_KEY).get(_key(name))


def is_flow_match(scheduler_config: dict[str, Any]) -> bool:
    return "FlowMatch" in str(scheduler_config.get("_class_name", ""))


def build_scheduler(sampler: Sampler, base_config: dict[str, Any]) -> Any:
    """A new scheduler of the sampler's class, configured like the pipeline's own."""
    import diffusers

    if sampler.scheduler == "FlowMatchHeunDiscreteScheduler":
        cls = _flow_match_heun()
    else:
        cls = getattr(diffusers, sampler.scheduler)
    if sampler.needs:
        try:
            __import__(sampler.needs)
        except ImportError as exc:
            raise ImportError(
                f"sampler {sampler.name} needs the '{sampler.needs}' package (pip install "
                f"{sampler.needs})"
            ) from exc
    return cls.from_config(base_config, **sampler.options)


def _flow_match_heun() -> type:
    """diffusers' FlowMatchHeunDiscreteScheduler, also taking the `sigmas` and `mu` that
    FLUX pipelines always pass (diffusers' own refuses them, so Heun would fail on FLUX):
    the given schedule is shifted like FlowMatchEulerDiscreteScheduler shifts it
    (resolution-dependent `mu` when the model's config uses dynamic shifting)."""
    import math

    import numpy as np
    import torch
    from diffusers import FlowMatchHeunDiscreteScheduler

    class FlowMatchHeunScheduler(FlowMatchHeunDiscreteScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
            if sigmas is None:
                return super().set_timesteps(num_inference_steps, device)
            s = np.asarray(sigmas, dtype=np.float64)
            if mu is not None and self.config.get("use_dynamic_shifting", False):
                s = math.exp(mu) / (math.exp(mu) + (1 / s - 1))
            else:
                s = self.config.shift * s / (1 + (self.config.shift - 1) * s)
            self.num_inference_steps = len(s)
            s = torch.from_numpy(s).to(dtype=torch.float32, device=device)
            timesteps = s * self.config.num_train_timesteps
            self.timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
            s = torch.cat([s, torch.zeros(1, device=s.device)])
            self.sigmas = torch.cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]])
            self.prev_derivative = None
            self.dt = None
            self._step_index = None
            self._begin_index = None

    return FlowMatchHeunScheduler
