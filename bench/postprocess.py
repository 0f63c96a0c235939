"""What pixgate's post-processing adds to saving an image: the worker's real post chain
(processing/chain.py `run_post`: the visible label, encoding, the TC260 implicit label with
its pixel MAC) against a plain Pillow save of the same image in the same format with
pixgate's encoder settings (`encode_image`), in the same run.

For JPEG and WebP the implicit label signs the pixels the file decodes to (so that
`pixgate inspect` can verify it), which costs one decode of the lossy file.

    .venv/bin/python bench/postprocess.py
    .venv/bin/python bench/postprocess.py --repeat 30 --markdown

The image is a deterministic 1024x1024 picture (gradients blended with Gaussian noise),
which compresses like a generated image does, unlike random bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SIZE = 1024
TARGETS = {"png": 1.1, "jpeg": 1.2, "webp": 1.2}


def test_image() -> Image.Image:
    """A deterministic RGB image with smooth regions, edges and grain."""
    radial = Image.radial_gradient("L").resize((SIZE, SIZE))
    linear = Image.linear_gradient("L").resize((SIZE, SIZE))
    noise = Image.effect_noise((SIZE, SIZE), 40).filter(ImageFilter.GaussianBlur(1.5))
    red = Image.blend(radial, noise, 0.3)
    green = Image.blend(linear, ImageChops.invert(radial), 0.5)
    blue = Image.blend(linear.rotate(90), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.4)
    image = Image.merge("RGB", (red, green, blue))
    grain = Image.effect_noise((SIZE, SIZE), 12).convert("RGB")
    return ImageChops.add(image, grain, scale=1.0, offset=-128)


def _paired(sides: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Run every side once per round, in turn, `repeat` rounds (after one warm-up round);
    each side's times in ms. Neighbouring runs share the machine's state of the moment, so
    per-round ratios cancel the drift that shared CPUs show (30% from one second to the
    next on the machine this was written on)."""
    for fn in sides.values():
        fn()  # warm caches (fonts, label layout)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def _ratio(times: dict[str, list[float]], side: str) -> float:
    """The median over rounds of side / base within the same round."""
    return statistics.median(t / b for t, b in zip(times[side], times["base"], strict=True))


def main() -> None:
    from pixgate.processing.chain import PostTools, run_post
    from pixgate.processing.encode import encode_image
    from pixgate.processing.explicit import find_font
    from pixgate.processing.label import label_key
    from pixgate.settings import load_settings
    from pixgate.spec.request import GenerationRequest, Watermark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    image = test_image()
    settings = load_settings(None, data_dir=ROOT / ".bench-data")  # the defaults; nothing written
    tools = PostTools(label_key=label_key(b"bench"))
    unlabelled = PostTools()  # no label key: the chain writes no implicit label
    mark = Watermark(
        text=settings.explicit_label_text,
        position=settings.explicit_label_position,
        opacity=settings.explicit_label_opacity,
    )

    rows = []
    for fmt, target in TARGETS.items():
        req = GenerationRequest(
            model="bench", prompt="bench", width=SIZE, height=SIZE, n=1, seed=0, steps=1,
            guidance=0, output_format=fmt, watermark=mark,
        )  # fmt: skip
        plain_req = req.model_copy(update={"watermark": None})

        def baseline(fmt: str = fmt) -> bytes:
            return encode_image(image, fmt, settings.png_compress_level)

        def visible(r: GenerationRequest = req) -> object:
            return run_post(image, r, settings, unlabelled, "bench-0").data

        def pixgate(r: GenerationRequest = req) -> object:
            return run_post(image, r, settings, tools, "bench-0").data

        def implicit(r: GenerationRequest = plain_req) -> object:
            return run_post(image, r, settings, tools, "bench-0").data

        sides = {"base": baseline, "visible": visible, "implicit": implicit, "pixgate": pixgate}
        times = _paired(sides, args.repeat)
        best = {k: statistics.median(v) for k, v in times.items()}
        ratio = _ratio(times, "pixgate")
        verdict = "met" if ratio <= target else "missed"
        rows.append(
            (fmt, best["base"], _ratio(times, "visible"), _ratio(times, "implicit"),
             best["pixgate"], ratio, target, verdict)
        )  # fmt: skip

    font = find_font(None) or "none (fallback: English)"
    print(f"{SIZE}x{SIZE} RGB, {args.repeat} paired rounds (ratios: median of per-round "
          f"ratios; times: medians); label font: {font}")  # fmt: skip
    print("visible: explicit label + encode; implicit: encode + TC260 label; pixgate: both")
    if args.markdown:
        print(
            "| format | plain save | visible only, ratio | implicit only, ratio "
            "| pixgate (both) | ratio | target | |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for fmt, base, vis, imp, pix, ratio, target, verdict in rows:
            print(
                f"| {fmt} | {base:.1f} ms | {vis:.3f} | {imp:.3f} | {pix:.1f} ms | {ratio:.3f} "
                f"| <= {target} | {verdict} |"
            )
    else:
        print(
            f"{'format':8} {'plain':>10} {'visible':>8} {'implicit':>9} {'pixgate':>10} "
            f"{'ratio':>7} {'target':>7}"
        )
        for fmt, base, vis, imp, pix, ratio, target, verdict in rows:
            print(
                f"{fmt:8} {base:8.1f}ms {vis:8.3f} {imp:9.3f} {pix:8.1f}ms {ratio:7.3f} "
                f"{target:7.2f} {verdict}"
            )


if __name__ == "__main__":
    main()
