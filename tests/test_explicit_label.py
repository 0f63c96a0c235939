"""The explicit (visible) label, measured on pixels: where it lands, how tall it is, that it
reads on white and on black, that Chinese renders as Chinese (or falls back to English,
never boxes), and Volcengine's logo_info text mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from structlog.testing import capture_logs

from pixgate.processing import explicit
from pixgate.processing.explicit import covers, draw_label, find_font, label_box, label_text

POSITIONS = ("bottom-right", "bottom-left", "top-left", "top-right")
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _changed(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    return ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox()


def _reset_warning() -> None:
    """Forget that the fallback warning was logged (whichever once-flag the module keeps)."""
    if isinstance(getattr(explicit, "_warned", None), set):
        explicit._warned.clear()
    if hasattr(explicit, "warned_fallback"):
        explicit.warned_fallback = False


def _cjk_font() -> str:
    font = find_font(None)
    if font is None:
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")
    return font


@pytest.mark.parametrize("size", [(1024, 768), (300, 900)])
@pytest.mark.parametrize("position", POSITIONS)
def test_label_lands_in_its_corner_and_is_tall_enough(size, position):
    width, height = size
    image = Image.new("RGB", size, (128, 128, 128))
    out = draw_label(image, "AI生成", position=position)
    assert out.mode == "RGB" and out.size == size
    box = _changed(image, out)
    assert box is not None
    left, top, right, bottom = box
    if position.endswith("left"):
        assert right <= width / 2
    else:
        assert left >= width / 2
    if position.startswith("top"):
        assert bottom <= height / 2
    else:
        assert top >= height / 2
    assert bottom - top >= 0.05 * min(width, height)
    assert bottom - top >= 12
    ink = label_box(image, "AI生成", position=position)
    assert ink[0] <= left and ink[1] <= top and right <= ink[2] + 1 and bottom <= ink[3] + 1


def test_small_image_keeps_the_minimum_height():
    image = Image.new("RGB", (120, 120), (128, 128, 128))
    box = _changed(image, draw_label(image, "AI生成"))
    assert box is not None and box[3] - box[1] >= 12


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)])
def test_label_reads_on_white_and_black(colour):
    image = Image.new("RGB", (512, 512), colour)
    out = draw_label(image, "AI生成")
    grey = out.convert("L").crop(label_box(image, "AI生成"))
    values = set(grey.getdata())
    assert min(values) < 60
    assert max(values) > 200


def test_opacity_zero_is_unchanged():
    image = Image.new("RGB", (256, 256), (10, 200, 30))
    out = draw_label(image, "AI生成", opacity=0)
    assert out is not image
    assert _changed(image, out) is None


def test_input_not_modified_and_rgba_in_rgb_out():
    image = Image.new("RGBA", (256, 256), (128, 128, 128, 255))
    before = image.copy()
    out = draw_label(image, "AI生成")
    assert out.mode == "RGB"
    assert _changed(before, image) is None


def test_chinese_renders_as_chinese():
    font = _cjk_font()
    assert covers(font, "生")
    assert covers(font, "AI 生成")
    image = Image.new("RGB", (512, 512), (128, 128, 128))
    one = draw_label(image, "AI生成")
    two = draw_label(image, "AI合成")
    assert _changed(one, two) is not None


@pytest.mark.skipif(not Path(DEJAVU).is_file(), reason="DejaVuSans not installed")
def test_latin_font_does_not_cover_chinese():
    assert covers(DEJAVU, "AI generated")
    assert not covers(DEJAVU, "生")


@pytest.mark.skipif(not Path(DEJAVU).is_file(), reason="DejaVuSans not installed")
def test_uncovered_text_falls_back_to_english_and_warns_once():
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    _reset_warning()
    with capture_logs() as logs:
        chinese = draw_label(image, "AI生成", font_path=DEJAVU)
        draw_label(image, "AI生成", font_path=DEJAVU)
    english = draw_label(image, "AI generated", font_path=DEJAVU)
    assert _changed(chinese, english) is None
    assert _changed(image, chinese) is not None
    warnings = [entry for entry in logs if entry.get("log_level") == "warning"]
    assert len(warnings) == 1
    _reset_warning()


def test_label_text_mapping():
    assert label_text(0, None) == "AI生成"
    assert label_text(1, None) == "AI generated"
    assert label_text(0, "由AI生成") == "由AI生成"
    assert label_text(1, "Made by AI") == "Made by AI"
    assert label_text(0, None, zh="AI合成") == "AI合成"


def test_missing_configured_font_names_it(tmp_path):
    missing = tmp_path / "no-such-font.ttf"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        find_font(missing)
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    with pytest.raises(ValueError, match=re.escape(str(junk))):
        find_font(str(junk))
