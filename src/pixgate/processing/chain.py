"""The post chain: what the worker does to each image a backend made, in order, from the
request's flags: `upscale`, then the visible `mark`, then `encode` (always, always last,
so whatever is written into the file at encode time sees the finished pixels).

A step is a name, a `wanted(req)` predicate and a function; the chain is a tuple of them.
A new post-step (a learned super-resolution, an AIGC label drawn on the image) is one more
entry in `POST_STEPS`, and no dialect changes. Only workers run this chain: API nodes
never decode or re-encode images (a mark chosen when fetching a result is a `mark` job the
worker runs through `remark`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pixgate.processing import postprocess
from pixgate.processing.encode import decode_stored, encode_image
from pixgate.processing.label import label_file
from pixgate.spec.request import GenerationRequest, Watermark

if TYPE_CHECKING:
    from pixgate.settings import Settings

ENCODE = "encode"


@dataclass(frozen=True)
class PostStep:
    """One image -> image step of the chain."""

    name: str
    wanted: Callable[[GenerationRequest], bool]
    run: Callable[[Any, GenerationRequest, Settings], Any]


POST_STEPS: tuple[PostStep, ...] = (
    PostStep(
        "upscale",
        lambda req: req.upscale > 1,
        lambda image, req, _settings: postprocess.upscale(image, req.upscale),
    ),
    PostStep(
        "mark",
        lambda req: req.watermark is not None,
        lambda image, req, _settings: postprocess.draw_watermark(image, req.watermark),
    ),
)


def planned(req: GenerationRequest, steps: Sequence[PostStep] = POST_STEPS) -> list[str]:
    """The names of the steps `req` goes through, in order (encode last)."""
    return [step.name for step in steps if step.wanted(req)] + [ENCODE]


@dataclass(frozen=True)
class LabelContext:
    """What the implicit label of one file needs: the signing key and the image's id."""

    key: bytes
    image_id: str


def labelled(
    data: bytes, fmt: str, image: Any, settings: Settings, label: LabelContext | None
) -> bytes:
    """`data` with its TC260 label when `label` is given (and `aigc_label` is on)."""
    if label is None or not settings.aigc_label:
        return data
    return label_file(
        data,
        fmt,
        label.key,
        label.image_id,
        producer=settings.aigc_producer,
        propagator=settings.aigc_propagator,
        source=image,
    )


def encode(
    image: Any, req: GenerationRequest, settings: Settings, label: LabelContext | None = None
) -> bytes:
    """The last step: the file bytes in the request's format and quality, labelled."""
    data = encode_image(
        image, req.output_format, settings.png_compress_level, req.output_compression
    )
    return labelled(data, req.output_format, image, settings, label)


def run_post(
    image: Any,
    req: GenerationRequest,
    settings: Settings,
    steps: Sequence[PostStep] = POST_STEPS,
    label: LabelContext | None = None,
) -> bytes:
    """A backend's image -> the file delivered for `req`. Raises OSError or ValueError
    when the image cannot be processed (the worker leaves that image out, uncharged)."""
    for step in steps:
        if step.wanted(req):
            image = step.run(image, req, settings)
    return encode(image, req, settings, label)


def remark(
    data: bytes, fmt: str, mark: Watermark, settings: Settings, label: LabelContext | None = None
) -> bytes:
    """A stored image's bytes with `mark` drawn on it, encoded again in `fmt`: the chain's
    mark and encode steps for an image that already exists (Volcengine's
    CVSync2AsyncGetResult chooses its `logo_info` when fetching)."""
    marked = postprocess.draw_watermark(decode_stored(data), mark)
    return labelled(
        encode_image(marked, fmt, settings.png_compress_level), fmt, marked, settings, label
    )
