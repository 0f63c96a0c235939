"""Resampling for the post chain's `upscale` step when no super-resolution network is
configured (processing/superres.py runs one when `[upscaler] model` is set). Dialects only
set request fields (`upscale`); processing/chain.py runs the steps from those fields."""

from __future__ import annotations

from typing import Any


def upscale(image: Any, factor: int) -> Any:
    """Lanczos to exactly `factor` times the size."""
    from PIL import Image

    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
