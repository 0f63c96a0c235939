"""The explicit (visible) AI-generated label of GB 45438: text such as "AI生成" drawn in a
corner of the image, its ink at least `height_ratio` (5%) of the image's shorter side, white
with a dark outline so it reads on light and dark images. The deployment's label and
Volcengine's `logo_info` are both drawn here.

Chinese must render as Chinese: the font is `label_font`, else the first CJK font installed.
When no font has the text's glyphs, `fallback_text` ("AI generated") is drawn with a Latin
font and a warning is logged once, never boxes. Only the corner the label covers is
composited, so a label costs about the same on a 4096 px image as on a 512 px one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import structlog
from PIL import Image, ImageDraw, ImageFont

log = structlog.get_logger("pixgate.processing.explicit")

Position = Literal["bottom-right", "bottom-left", "top-left", "top-right"]

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MIN_TEXT_PX = 12
_MISSING = "\U0010ffff"  # a code point no font has: its glyph is the font's "missing" box
_warned: set[str] = set()


@lru_cache(maxsize=16)
def find_font(configured: str | Path | None = None) -> str | None:
    """The font labels are drawn with: `configured` (ValueError naming it when it is
    missing or not a font), else the first CJK font installed, else None."""
    if configured is not None:
        path = str(configured)
        try:
            ImageFont.truetype(path, 12)
        except OSError as exc:
            raise ValueError(f"label_font: cannot load {path}: {exc}") from None
        return path
    return next((p for p in CJK_FONTS if Path(p).is_file()), None)


@lru_cache(maxsize=64)
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        if Path(LATIN_FONT).is_file():
            return ImageFont.truetype(LATIN_FONT, size)
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=256)
def covers(font_path: str, text: str) -> bool:
    """Whether the font has a glyph for every character of `text` (spaces aside): a
    character drawn exactly like a code point no font has is a missing one."""
    font = _font(font_path, 32)
    missing = font.getmask(_MISSING)
    blank = (missing.size, bytes(missing))
    for char in set(text):
        if char.isspace():
            continue
        mask = font.getmask(char)
        if (mask.size, bytes(mask)) == blank:
            return False
    return True


def _chosen(text: str, font_path: str | Path | None, fallback_text: str) -> tuple[str, str | None]:
    """(text, font path) actually drawn; the fallback (Latin font) when no font covers."""
    path = find_font(font_path)
    if path is not None and covers(path, text):
        return text, path
    if text.isascii():
        return text, None
    if text not in _warned:
        _warned.add(text)
        log.warning(
            "no font has the label's glyphs; drawing the English label instead",
            text=text,
            drawn=fallback_text,
            font=path,
        )
    return fallback_text, None


def _sized(text: str, path: str | None, want: int, max_width: int) -> tuple[object, int, tuple]:
    """(font, stroke, ink box at the origin) whose ink is at least `want` px high (within
    the image's width when it can be)."""
    size = max(8, want)
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    for _ in range(12):
        font = _font(path, size)
        stroke = max(1, size // 12)
        box = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        height = box[3] - box[1]
        if height >= want:
            break
        size = max(size + 1, round(size * want / max(height, 1)))
    return font, stroke, box


def label_box(
    image: Image.Image,
    text: str,
    *,
    position: Position = "bottom-right",
    height_ratio: float = 0.05,
    font_path: str | Path | None = None,
    fallback_text: str = "AI generated",
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box the label's ink occupies on `image`."""
    return _layout(image.size, text, position, height_ratio, font_path, fallback_text)[0]


def _layout(
    size: tuple[int, int],
    text: str,
    position: Position,
    height_ratio: float,
    font_path: str | Path | None,
    fallback_text: str,
) -> tuple[tuple[int, int, int, int], str, object, int, tuple[int, int]]:
    width, height = size
    drawn, path = _chosen(text, font_path, fallback_text)
    want = max(MIN_TEXT_PX, int(height_ratio * min(width, height) + 0.999))
    font, stroke, ink = _sized(drawn, path, want, width)
    ink_w, ink_h = ink[2] - ink[0], ink[3] - ink[1]
    margin = max(2, ink_h // 2)
    left = margin if position.endswith("left") else width - ink_w - margin
    top = margin if position.startswith("top") else height - ink_h - margin
    left, top = max(0, left), max(0, top)
    box = (left, top, min(width, left + ink_w), min(height, top + ink_h))
    return box, drawn, font, stroke, (left - ink[0], top - ink[1])


def draw_label(
    image: Image.Image,
    text: str,
    *,
    position: Position = "bottom-right",
    opacity: float = 0.85,
    height_ratio: float = 0.05,
    font_path: str | Path | None = None,
    fallback_text: str = "AI generated",
) -> Image.Image:
    """`image` (as RGB) with the label drawn in `position` at `opacity`."""
    base = image.convert("RGB") if image.mode != "RGB" else image.copy()
    if opacity <= 0:
        return base
    region, layer = _label_layer(
        base.size, text, position, min(opacity, 1.0), height_ratio, font_path, fallback_text
    )
    patch = base.crop(region).convert("RGBA")
    base.paste(Image.alpha_composite(patch, layer).convert("RGB"), region[:2])
    return base


@lru_cache(maxsize=64)
def _label_layer(
    size: tuple[int, int],
    text: str,
    position: Position,
    opacity: float,
    height_ratio: float,
    font_path: str | Path | None,
    fallback_text: str,
) -> tuple[tuple[int, int, int, int], Image.Image]:
    """(region of the image, the label drawn on a transparent layer of that region's size):
    the same for every image of a size, so a batch renders its text once. The layer is
    only read (composited onto a copy of the region), never changed."""
    box, drawn, font, stroke, origin = _layout(
        size, text, position, height_ratio, font_path, fallback_text
    )
    pad = stroke + 1
    region = (
        max(0, box[0] - pad),
        max(0, box[1] - pad),
        min(size[0], box[2] + pad),
        min(size[1], box[3] + pad),
    )
    layer = Image.new("RGBA", (region[2] - region[0], region[3] - region[1]), (0, 0, 0, 0))
    alpha = round(255 * opacity)
    ImageDraw.Draw(layer).text(
        (origin[0] - region[0], origin[1] - region[1]),
        drawn,
        font=font,
        fill=(255, 255, 255, alpha),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, alpha),
    )
    return region, layer


def label_text(
    language: int, custom: str | None, zh: str = "AI生成", en: str = "AI generated"
) -> str:
    """Volcengine logo_info's text: `logo_text_content` when given, else by `language`
    (0 Chinese, 1 English)."""
    if custom:
        return custom
    return en if language == 1 else zh
