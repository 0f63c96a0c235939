"""Loading pipelines from a builtin build, a local directory or the Hugging Face hub,
kept in a small LRU of loaded pipelines."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pixgate.backends.base import BackendError
from pixgate.backends.diffusers.builtin import BUILTIN_PREFIX, ensure_builtin
from pixgate.spec.catalog import ModelSpec

# One load at a time per process, whatever the cache: while `from_pretrained` builds a model
# on the meta device, accelerate patches torch.nn.Module for the whole process, and two
# loads overlapping in two threads (two workers in one process, as in tests with two nodes)
# can restore each other's patch and leave every later module built on the meta device.
_LOAD_LOCK = threading.Lock()


class ModelLoadError(BackendError):
    """The model's weights could not be found or loaded (offline hub, bad directory...)."""

    def __init__(self, message: str):
        super().__init__("model_unavailable", message)


def pick_device() -> str:
    """The best device this machine has: cuda, then mps, then cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str) -> Any:
    """`auto` is float16 on accelerators (half the memory, much faster) and float32 on
    cpu, where half precision is slow or unsupported."""
    import torch

    if name == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return getattr(torch, name)


def pipeline_bytes(pipe: Any) -> int:
    """Memory the pipeline's weights and buffers take."""
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def resolve_source(spec: ModelSpec, models_dir: Path) -> str:
    """Where diffusers should load from: a directory path or a hub id."""
    if spec.source_kind == "builtin":
        return str(ensure_builtin(spec.source[len(BUILTIN_PREFIX) :], models_dir))
    if spec.source_kind == "local":
        path = Path(spec.source.removeprefix("file:")).expanduser()
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"{path} is not a diffusers model directory")
        return str(path)
    return spec.source


GIB = 1024**3


class PipelineCache:
    """LRU of loaded pipelines, keyed by (source, device, dtype). Thread-safe.

    Beyond `max_loaded` pipelines, or beyond a memory budget for their device kind (RAM for
    cpu, VRAM for cuda/mps), the least recently used ones are unloaded, so switching models
    needs no restart. img2img/inpaint variants share the loaded modules (`from_pipe`) and
    count nothing extra."""

    def __init__(
        self,
        models_dir: Path,
        max_loaded: int = 2,
        ram_budget_gb: float | None = None,
        vram_budget_gb: float | None = None,
    ):
        self.models_dir = models_dir
        self.max_loaded = max_loaded
        self.budgets = {
            "cpu": ram_budget_gb * GIB if ram_budget_gb else None,
            "gpu": vram_budget_gb * GIB if vram_budget_gb else None,
        }
        self._loaded: OrderedDict[CacheKey, tuple[Any, int]] = OrderedDict()  # pipe, bytes
        self._derived: dict[tuple[CacheKey, str], Any] = {}  # (key, mode) -> pipeline
        self._lock = threading.RLock()

    def device_for(self, spec: ModelSpec) -> str:
        return pick_device() if spec.device == "auto" else spec.device

    def key(self, spec: ModelSpec) -> CacheKey:
        device = self.device_for(spec)
        return (spec.source, device, str(resolve_dtype(spec.dtype, device)))

    def loaded(self) -> list[tuple[CacheKey, int]]:
        """What is loaded, least recently used first, with its size in bytes."""
        with self._lock:
            return [(key, size) for key, (_, size) in self._loaded.items()]

    def get(self, spec: ModelSpec) -> Any:
        key = self.key(spec)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key][0]
            pipe = self._load(spec, key)
            self._loaded[key] = (pipe, pipeline_bytes(pipe))
            self._evict(keep=key)
            return pipe

    def get_for_mode(self, spec: ModelSpec, kind: str) -> Any:
        """The pipeline for txt2img, img2img or inpaint, derived once from the loaded one."""
        from pixgate.backends.diffusers.engine import for_mode

        base = self.get(spec)
        if kind == "txt2img":
            return base
        mode = "inpaint" if kind == "inpaint" else "img2img"
        key = self.key(spec)
        with self._lock:
            derived = self._derived.get((key, mode))
            if derived is None:
                derived = for_mode(base, mode)
                self._derived[(key, mode)] = derived
            return derived

    def _evict(self, keep: CacheKey) -> None:
        """Unload least recently used pipelines (never `keep`) until within limits."""
        for key in list(self._loaded):
            if key == keep:
                continue
            kind = _budget_kind(key[1])
            budget = self.budgets[kind]
            used = sum(size for k, (_, size) in self._loaded.items() if _budget_kind(k[1]) == kind)
            over_count = len(self._loaded) > self.max_loaded
            over_budget = budget is not None and used > budget and _budget_kind(keep[1]) == kind
            if over_count or over_budget:
                self._unload(key)

    def clear(self) -> None:
        """Unload every pipeline (the worker is stopping), collecting garbage once: a
        full collection costs ~0.4 s in a large process, one per pipeline made each
        worker stop take seconds."""
        with self._lock:
            keys = list(self._loaded)
            for key in keys:
                self._unload(key, collect=False)
            if keys:
                self._collect(keys)

    def _unload(self, key: CacheKey, collect: bool = True) -> None:
        self._loaded.pop(key, None)
        for mode in ("img2img", "inpaint"):
            self._derived.pop((key, mode), None)
        if collect:
            self._collect([key])

    @staticmethod
    def _collect(keys: list[CacheKey]) -> None:
        """Free the unloaded pipelines' memory now (and the GPU cache if one was there)."""
        gc.collect()
        if any(key[1].startswith("cuda") for key in keys):
            import torch

            torch.cuda.empty_cache()

    def _load(self, spec: ModelSpec, key: CacheKey) -> Any:
        _quiet_libraries()
        from diffusers import DiffusionPipeline

        device = key[1]
        try:
            dtype = resolve_dtype(spec.dtype, device)
            with _LOAD_LOCK:
                source = resolve_source(spec, self.models_dir)
                pipe = DiffusionPipeline.from_pretrained(
                    source,
                    dtype=dtype,
                    variant=spec.variant,
                    cache_dir=str(self.models_dir / "hub"),
                )
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(device)
        except ModelLoadError:
            raise
        except Exception as exc:  # offline hub, missing files, incompatible weights, no GPU
            raise ModelLoadError(f"{type(exc).__name__}: {exc}".splitlines()[0][:300]) from exc


CacheKey = tuple[str, str, str]  # source, device, dtype


def _budget_kind(device: str) -> str:
    return "cpu" if device == "cpu" else "gpu"
