"""Building a diffusers scheduler for a sampler of the name table in `pixgate.spec.samplers`."""

from __future__ import annotations

from typing import Any

from pixgate.spec.samplers import Sampler


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
