"""Encoding a finished image into file bytes: the last step of the processing chain.

It is its own module so that later steps that write into the file (the AIGC label's XMP,
C2PA credentials) happen here, at encode time, once per file.
"""

from __future__ import annotations

import io
from typing import Any

from pixgate.storage.base import FORMATS


def encode_image(image: Any, fmt: str, png_level: int = 1, quality: int | None = None) -> bytes:
    """PIL image -> file bytes in `fmt` (png|jpeg|webp); `quality` for jpeg and webp
    (default 90)."""
    pil_format, _ = FORMATS[fmt]
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, pil_format, compress_level=png_level)
    else:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.save(buf, pil_format, quality=quality if quality is not None else 90)
    return buf.getvalue()


def decode_stored(data: bytes) -> Any:
    """A file pixgate itself encoded -> a PIL image (for steps applied to stored images,
    such as a mark chosen when fetching a result)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.copy()
