"""Encoding a finished image into file bytes: the last step of the processing chain."""

from __future__ import annotations

import io
from typing import Any

from pixgate.storage.local import FORMATS


def encode_image(image: Any, fmt: str, png_level: int = 1, quality: int | None = None) -> bytes:
    """PIL image -> file bytes in `fmt` (png|jpeg|webp)."""
    pil_format, _ = FORMATS[fmt]
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, pil_format, compress_level=png_level)
    else:
        rgb = image.convert("RGB")
        rgb.save(buf, pil_format, quality=quality if quality is not None else 90)
    return buf.getvalue()
