"""LoRA adapters, loaded once per pipeline and switched per request.

Adapters live on the pipeline's shared modules (UNet/transformer, text encoders), so the
img2img/inpaint variants made with `from_pipe` and the per-request sampler variants see
them too. The engine runs one generation at a time per worker, so setting the active
adapters just before a call cannot leak into another request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixgate.backends.base import BackendError
from pixgate.spec.catalog import LoraSpec
from pixgate.spec.request import LoraRef


class LoraError(BackendError, ValueError):
    """The requested LoRA cannot be applied to this model (missing or incompatible file)."""

    def __init__(self, message: str):
        super().__init__("invalid_lora", message)


def loaded_adapters(pipe: Any) -> set[str]:
    try:
        lists = pipe.get_list_adapters()
    except Exception:  # a pipeline without LoRA support
        return set()
    return {name for names in lists.values() for name in names}


def apply_loras(pipe: Any, refs: list[LoraRef], registry: dict[str, LoraSpec]) -> None:
    """Make exactly `refs` active on `pipe` with their scales. A scale of 0 is the same as
    leaving the LoRA out (it is not even evaluated)."""
    wanted = [ref for ref in refs if ref.scale > 0]
    loaded = loaded_adapters(pipe)
    if not wanted:
        if loaded:
            pipe.disable_lora()
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise LoraError(f"{type(pipe).__name__} does not support LoRA")
    for ref in wanted:
        if ref.name in loaded:
            continue
        spec = registry.get(ref.name)
        if spec is None:
            raise LoraError(f"unknown LoRA {ref.name!r}")
        path = Path(spec.path).expanduser()
        if not path.is_file():
            raise LoraError(f"LoRA {ref.name!r}: file {path} not found")
        try:
            pipe.load_lora_weights(str(path), adapter_name=ref.name)
        except Exception as exc:  # wrong architecture, corrupt file, missing peft
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            raise LoraError(f"LoRA {ref.name!r} does not fit this model ({msg})") from exc
    pipe.enable_lora()
    pipe.set_adapters([ref.name for ref in wanted], adapter_weights=[ref.scale for ref in wanted])
