"""The diffusers backend: builtin builds, hub ids and local directories, run by
`DiffusersEngine` on pipelines from a `PipelineCache`.

The registry (pixgate.backends) imports this module by name, only on a worker that serves
a diffusers model, so nothing above the backends ever imports torch by accident. Creating
the backend imports torch and diffusers at once: a machine without them learns it when the
worker starts (or its first job), not halfway through a generation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from pixgate.backends.base import BackendResult, StepCallback
from pixgate.backends.diffusers.builtin import BUILTIN_PREFIX, ensure_builtin
from pixgate.backends.diffusers.engine import DiffusersEngine
from pixgate.backends.diffusers.loader import PipelineCache
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest

if TYPE_CHECKING:
    from pixgate.settings import Settings

log = structlog.get_logger("pixgate.backends.diffusers")


def _stored_image(storage: Any, path: str) -> Any:
    """An input image the dialect stored (already checked when it was uploaded)."""
    from PIL import Image

    image = Image.open(io.BytesIO(storage.read(path)))
    image.load()
    return image


def make_engine(settings: Settings, storage: Any = None) -> DiffusersEngine:
    """The engine with the settings' cache limits, LoRAs and torch threads; `storage`
    (where input images are) for img2img and inpainting."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    cache = PipelineCache(
        settings.models_dir,
        settings.max_loaded_pipelines,
        settings.ram_budget_gb,
        settings.vram_budget_gb,
    )
    return DiffusersEngine(
        cache,
        (lambda path: _stored_image(storage, path)) if storage is not None else None,
        {lora.name: lora for lora in settings.loras},
    )


class DiffusersBackend:
    """The Backend protocol over one engine (and so one pipeline cache per worker)."""

    def __init__(self, engine: DiffusersEngine, settings: Settings):
        self.engine = engine
        self.settings = settings

    def max_batch(self, spec: ModelSpec) -> int:
        return self.engine.max_batch(spec)

    def generate_batch(
        self,
        reqs: list[GenerationRequest],
        spec: ModelSpec,
        on_step: StepCallback | None = None,
    ) -> list[BackendResult]:
        # SamplerError, LoraError and ModelLoadError are BackendErrors with their codes.
        return self.engine.generate_batch(reqs, spec, on_step)

    def preload(self, specs: Sequence[ModelSpec]) -> None:
        """Build every builtin model to disk up front, and load the first ones (each
        source once) while they fit in the pipeline cache, so the first requests do not
        pay for it. Hub and local models load on their first request."""
        cache = self.engine.cache
        loaded: set[str] = set()
        for spec in specs:
            if spec.source_kind != "builtin":
                continue
            try:
                ensure_builtin(spec.source[len(BUILTIN_PREFIX) :], self.settings.models_dir)
                if spec.source not in loaded and len(loaded) < cache.max_loaded:
                    cache.get(spec)
                    loaded.add(spec.source)
            except Exception as exc:  # reported again, per job, if it persists
                log.warning("preload failed", model=spec.name, error=str(exc))

    def close(self) -> None:
        self.engine.cache.clear()


def create(settings: Settings, storage: Any = None) -> DiffusersBackend:
    """The registry's entry point. Imports torch and diffusers now (ImportError when this
    machine has no `pixgate[engine]`)."""
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    return DiffusersBackend(make_engine(settings, storage), settings)
