"""The image post-steps the worker applies before encoding: upscaling and the visible text
mark. Dialects only set request fields (`upscale`, `watermark`); processing/chain.py runs
these steps from those fields, in order, and is the one place they take effect.

Upscaling resamples with Lanczos; a learned super-resolution model can replace `upscale`
without any dialect noticing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pixgate.spec.request import Watermark

# Fonts with CJK glyphs, tried in order, so Chinese marks are not drawn as boxes.
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def upscale(image: Any, factor: int) -> Any:
    from PIL import Image

    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def draw_watermark(image: Any, mark: Watermark) -> Any:
    """Draw `mark.text` in a corner, white with a dark outline so it reads on any
    background, at `mark.opacity`."""
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    size = max(12, min(base.width, base.height) // 24)
    font = _font(size)
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), mark.text, font=font, stroke_width=1)
    margin = size // 2
    x = margin if mark.position.endswith("left") else base.width - (right - left) - margin
    y = margin if mark.position.startswith("top") else base.height - (bottom - top) - margin
    alpha = round(255 * mark.opacity)
    draw.text(
        (x - left, y - top),
        mark.text,
        font=font,
        fill=(255, 255, 255, alpha),
        stroke_width=1,
        stroke_fill=(0, 0, 0, alpha),
    )
    return Image.alpha_composite(base, layer).convert("RGB")
