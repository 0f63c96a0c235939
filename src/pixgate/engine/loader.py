"""Loading pipelines from a builtin build, a local directory or the Hugging Face hub,
kept in a small LRU of loaded pipelines."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pixgate.catalog import ModelSpec
from pixgate.engine.builtin import BUILTIN_PREFIX, ensure_builtin


class ModelLoadError(Exception):
    """The model's weights could not be found or loaded (offline hub, bad directory...)."""


def pick_device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", torch.float16
    return "cpu", torch.float32


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


class PipelineCache:
    """LRU of loaded pipelines keyed by source. Thread-safe; loads happen outside the
    engine's hot path only on a miss."""

    def __init__(self, models_dir: Path, max_loaded: int = 2):
        self.models_dir = models_dir
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._derived: dict[tuple[str, str], Any] = {}  # (source, mode) -> pipeline
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Any:
        with self._lock:
            if spec.source in self._loaded:
                self._loaded.move_to_end(spec.source)
                return self._loaded[spec.source]
            pipe = self._load(spec)
            self._loaded[spec.source] = pipe
            while len(self._loaded) > self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                for mode in ("img2img", "inpaint"):
                    self._derived.pop((evicted, mode), None)
            return pipe

    def get_for_mode(self, spec: ModelSpec, kind: str) -> Any:
        """The pipeline for txt2img, img2img or inpaint, derived once from the loaded one."""
        from pixgate.engine.diffusion import for_mode

        base = self.get(spec)
        if kind == "txt2img":
            return base
        mode = "inpaint" if kind == "inpaint" else "img2img"
        with self._lock:
            derived = self._derived.get((spec.source, mode))
            if derived is None:
                derived = for_mode(base, mode)
                self._derived[(spec.source, mode)] = derived
            return derived

    def _load(self, spec: ModelSpec) -> Any:
        _quiet_libraries()
        from diffusers import DiffusionPipeline

        device, dtype = pick_device()
        try:
            source = resolve_source(spec, self.models_dir)
            pipe = DiffusionPipeline.from_pretrained(
                source,
                dtype=dtype,
                cache_dir=str(self.models_dir / "hub"),
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # offline hub, missing files, incompatible weights
            raise ModelLoadError(f"{type(exc).__name__}: {exc}".splitlines()[0][:300]) from exc
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
