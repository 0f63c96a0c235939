"""The post chain: what the worker does to each image a backend made, in order:
`moderate` (the optional output-image classifier, on the pixels the backend made), then
from the request's flags `upscale` (a super-resolution network, else Lanczos) and `mark`
(the visible label, processing/explicit.py), then `encode` (always, always last: the TC260
implicit label, then C2PA credentials when configured, are written into the file there,
so they see the finished pixels and bytes).

A step is a name, a `wanted(req)` predicate and a function; the chain is a tuple of them.
What the steps need that lives as long as the worker (the label key, a loaded SR network,
the classifier, the C2PA signer) is one `PostTools`, built once per worker. Only workers
run this chain: API nodes never decode or re-encode images (a mark chosen when fetching a
result is a `mark` job the worker runs through `remark`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pixgate.processing import explicit, postprocess
from pixgate.processing.encode import decode_stored, encode_image
from pixgate.processing.image_moderation import check_image
from pixgate.processing.label import label_file, read_label
from pixgate.spec.request import GenerationRequest, Watermark

if TYPE_CHECKING:
    from pixgate.processing.c2pa_sign import C2paSigner
    from pixgate.processing.image_moderation import ImageClassifier
    from pixgate.settings import Settings

ENCODE = "encode"


class Upscaler(Protocol):
    """A loaded super-resolution network (processing/superres.py; spelled out here so the
    worker's chain does not import torch to name its type)."""

    name: str

    def upscale(self, image: Any, factor: int) -> Any: ...


@dataclass
class PostTools:
    """What the chain needs beyond the request: built once per worker (queue/storing.py
    `post_tools`). All optional: an empty PostTools labels nothing and upscales with
    Lanczos."""

    label_key: bytes | None = None
    upscaler: Upscaler | None = None
    classifier: ImageClassifier | None = None
    c2pa: C2paSigner | None = None


@dataclass
class Processed:
    """One image through the chain: its file bytes, or None when the classifier refused
    it (`refused_score` says how sure it was); `notes` records what ran (the upscaler)."""

    data: bytes | None
    refused_score: float | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PostStep:
    """One image -> image step of the chain."""

    name: str
    wanted: Callable[[GenerationRequest], bool]
    run: Callable[[Any, GenerationRequest, Settings, PostTools, dict[str, str]], Any]


def _upscale(
    image: Any, req: GenerationRequest, _s: Settings, tools: PostTools, notes: dict
) -> Any:
    """The configured SR network, else Lanczos; `notes["upscaler"]` says which ran."""
    if tools.upscaler is not None:
        notes["upscaler"] = tools.upscaler.name
        return tools.upscaler.upscale(image, req.upscale)
    notes["upscaler"] = "lanczos"
    return postprocess.upscale(image, req.upscale)


def _mark(image: Any, req: GenerationRequest, settings: Settings, _t: PostTools, _n: dict) -> Any:
    assert req.watermark is not None
    return draw_mark(image, req.watermark, settings)


POST_STEPS: tuple[PostStep, ...] = (
    PostStep("upscale", lambda req: req.upscale > 1, _upscale),
    PostStep("mark", lambda req: req.watermark is not None, _mark),
)


def planned(req: GenerationRequest, steps: Sequence[PostStep] = POST_STEPS) -> list[str]:
    """The names of the steps `req` goes through, in order (encode last)."""
    return [step.name for step in steps if step.wanted(req)] + [ENCODE]


def draw_mark(image: Any, mark: Watermark, settings: Settings) -> Any:
    """The visible label (the deployment's explicit label or Volcengine's `logo_info`)."""
    return explicit.draw_label(
        image,
        mark.text,
        position=mark.position,
        opacity=mark.opacity,
        height_ratio=settings.explicit_label_height,
        font_path=settings.label_font,
        fallback_text=settings.explicit_label_text_en,
    )


def finish_file(
    data: bytes,
    fmt: str,
    image: Any,
    settings: Settings,
    tools: PostTools,
    image_id: str,
    origin: dict[str, Any] | None = None,
) -> bytes:
    """Encoded bytes -> the delivered file: the TC260 label (when `aigc_label` is on and a
    key is set), then C2PA credentials (when configured), which hash the final bytes and
    so come last; the TC260 label signs pixels, which C2PA's embedding leaves alone."""
    if tools.label_key is not None and settings.aigc_label:
        data = label_file(
            data,
            fmt,
            tools.label_key,
            image_id,
            producer=settings.aigc_producer,
            propagator=settings.aigc_propagator,
            source=image,
            origin=origin,
        )
    if tools.c2pa is not None:
        from pixgate.processing.c2pa_sign import sign_image

        data = sign_image(
            data,
            fmt,
            tools.c2pa,
            title=image_id,
            producer=settings.aigc_producer,
            image_id=image_id,
        )
    return data


def run_post(
    image: Any,
    req: GenerationRequest,
    settings: Settings,
    tools: PostTools,
    image_id: str,
    origin: dict[str, Any] | None = None,
    steps: Sequence[PostStep] = POST_STEPS,
) -> Processed:
    """A backend's image -> the file delivered for `req`, or a refusal by the output-image
    classifier. `origin`: the label of the job's input image (img2img); an image that
    itself arrived labelled (a relayed result) records its own. Raises OSError or ValueError
    when the image cannot be processed (the worker leaves that image out, uncharged)."""
    if tools.classifier is not None:
        score = check_image(tools.classifier, image, settings.image_moderation.threshold)
        if score is not None:
            return Processed(None, refused_score=score)
    origin = read_label(image) or origin
    notes: dict[str, str] = {}
    for step in steps:
        if step.wanted(req):
            image = step.run(image, req, settings, tools, notes)
    data = encode_image(
        image, req.output_format, settings.png_compress_level, req.output_compression
    )
    return Processed(
        finish_file(data, req.output_format, image, settings, tools, image_id, origin), None, notes
    )


def remark(
    data: bytes, fmt: str, mark: Watermark, settings: Settings, tools: PostTools, image_id: str
) -> bytes:
    """A stored image's bytes with `mark` drawn on it, encoded again in `fmt`: the chain's
    mark and encode steps for an image that already exists (Volcengine's
    CVSync2AsyncGetResult chooses its `logo_info` when fetching)."""
    marked = draw_mark(decode_stored(data), mark, settings)
    encoded = encode_image(marked, fmt, settings.png_compress_level)
    return finish_file(encoded, fmt, marked, settings, tools, image_id)
