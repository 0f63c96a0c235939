"""Super-resolution for the post chain's `upscale` step: a real SR network (Real-ESRGAN,
SPAN, SwinIR, ... weights) loaded through spandrel when `[upscaler] model` is set, run tile
by tile on the worker's device so large images fit in memory. Imported by name from
queue/storing.py only where a model is configured: torch and spandrel load nowhere else.

spandrel imports torchvision at package import, but only two architectures (LaMa and
RestoreFormer, neither a super-resolution network) call it. Where torchvision is not
installed (a CPU torch build next to PyPI's torchvision does not even import), spandrel is
imported with a stand-in for those two functions that raises if they are ever called; the
stand-in is removed from `sys.modules` straight after, so no other library sees it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from PIL import Image

OVERLAP = 16  # input pixels each tile borrows from its neighbours (hides the seams)
_TORCHVISION = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class _InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _needs_torchvision(*_args: object, **_kwargs: object) -> Any:
    raise RuntimeError("this spandrel architecture needs torchvision, which is not installed")


@contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """While spandrel imports: a `torchvision.transforms.functional` whose functions raise
    (only where torchvision is missing), removed again afterwards."""
    if importlib.util.find_spec("torchvision") is not None:
        yield
        return
    made = []
    for name in _TORCHVISION:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        made.append(module)
    made[0].transforms = made[1]  # type: ignore[attr-defined]
    made[1].functional = made[2]  # type: ignore[attr-defined]
    functional = made[2]
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = _needs_torchvision  # type: ignore[attr-defined]
    functional.normalize = _needs_torchvision  # type: ignore[attr-defined]
    sys.modules.update({m.__name__: m for m in made})
    try:
        yield
    finally:
        for name in _TORCHVISION:
            sys.modules.pop(name, None)


def _spandrel() -> Any:
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        with _torchvision_stand_in():
            import spandrel
    except ImportError as e:
        raise ValueError(
            "[upscaler] model needs spandrel: pip install 'pixgate[sr]' "
            f"(or spandrel and einops) ({e})"
        ) from e
    return spandrel


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class Upscaler:
    """A loaded SR network. `name` is what responses report as the upscaler that ran."""

    name: str
    scale: int
    descriptor: Any  # spandrel.ImageModelDescriptor
    device: str
    tile: int
    whole: bool  # the model wants the whole image (spandrel's tiling INTERNAL)

    def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        """`image` enlarged `factor` times: the network as many times as it takes to reach
        at least `factor`, then Lanczos to the exact size (a x4 network asked for x2 runs
        once and is scaled down; a x2 network asked for x4 runs twice)."""
        target = (image.width * factor, image.height * factor)
        alpha = image.getchannel("A") if "A" in image.getbands() else None
        out = image.convert("RGB")
        reached = 1
        while reached < factor:
            out = self._run(out)
            reached *= self.scale
        if out.size != target:
            out = out.resize(target, Image.Resampling.LANCZOS)
        if alpha is not None:  # the network sees RGB; the alpha is resampled alongside
            out.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
        return out

    def _run(self, image: Image.Image) -> Image.Image:
        import numpy as np
        import torch

        dtype = next(self.descriptor.model.parameters()).dtype
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        tensor = pixels.permute(2, 0, 1).unsqueeze(0).to(self.device, dtype)
        with torch.inference_mode():
            if self.whole or (image.width <= self.tile and image.height <= self.tile):
                result = self.descriptor(tensor)
            else:
                result = self._tiled(tensor)
        array = result.squeeze(0).permute(1, 2, 0).float().clamp(0, 1).mul(255).round()
        return Image.fromarray(array.to(torch.uint8).cpu().numpy(), "RGB")

    def _tiled(self, tensor: Any) -> Any:
        """Run the network tile by tile; each tile is cut with OVERLAP pixels of context on
        every side, and only its own part of the output is kept."""
        import torch

        _, channels, height, width = tensor.shape
        s = self.scale
        out = torch.empty((1, channels, height * s, width * s), dtype=tensor.dtype)
        out = out.to(tensor.device)
        for top in range(0, height, self.tile):
            for left in range(0, width, self.tile):
                bottom, right = min(top + self.tile, height), min(left + self.tile, width)
                t0, l0 = max(top - OVERLAP, 0), max(left - OVERLAP, 0)
                t1, l1 = min(bottom + OVERLAP, height), min(right + OVERLAP, width)
                piece = self.descriptor(tensor[:, :, t0:t1, l0:l1])
                keep = piece[
                    :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
                out[:, :, top * s : bottom * s, left * s : right * s] = keep
        return out


def load_upscaler(path: str | Path, device: str | None = None, tile: int = 512) -> Upscaler:
    """Load SR weights (.safetensors, .pth, .ckpt) through spandrel, which recognises the
    architecture from the tensors. ValueError (naming the file) when the file is missing,
    unreadable, of an unknown architecture, or not an RGB super-resolution network."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"[upscaler] model: no such file: {file}")
    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_file(file)
    except Exception as e:  # spandrel raises its own UnsupportedModelError, or torch's
        raise ValueError(f"[upscaler] model {file}: not a model spandrel can load ({e})") from e
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.scale < 2:
        raise ValueError(
            f"[upscaler] model {file}: {descriptor.architecture.name} is a "
            f"{descriptor.purpose} model with scale {descriptor.scale}, not a "
            "super-resolution network (scale 2 or more)"
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ValueError(f"[upscaler] model {file}: needs an RGB model (3 channels in and out)")
    chosen = device or default_device()
    descriptor.to(chosen)
    if chosen.startswith("cuda") and descriptor.supports_half:
        descriptor.half()
    descriptor.eval()
    return Upscaler(
        name=f"{descriptor.architecture.name} x{descriptor.scale}",
        scale=descriptor.scale,
        descriptor=descriptor,
        device=chosen,
        tile=tile,
        whole=descriptor.tiling.name == "INTERNAL",
    )
