"""Sampler names as AUTOMATIC1111 users write them, mapped to diffusers schedulers.

The mapping follows diffusers' own table of A1111 equivalents. Names are matched without
regard to case, spacing or parentheses, so `DPM++ 2M SDE (Karras)`, `dpm++ 2m sde karras`
and `DPM++ 2M SDE Karras` are the same sampler. A scheduler is built per request from the
pipeline's own scheduler config: the shared pipeline is never mutated.

This module is the name table only (no torch, no diffusers), so API nodes validate sampler
names cheaply; `pixgate.backends.diffusers.schedulers` builds the schedulers.
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
