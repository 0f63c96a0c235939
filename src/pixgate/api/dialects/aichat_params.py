"""aichat's image-to-image `params` (seed 003) and their translation into a
GenerationRequest. The seed gives the fields and one example but no ranges or defaults;
the choices made where it is silent are listed in docs/api-aichat.md and noted below."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from pixgate.core.service import Pixgate
from pixgate.core.shaping import FieldNames, closest_size, shape_request
from pixgate.errors import invalid
from pixgate.spec.catalog import ModelSpec, Style, parse_size, size_for_ratio, stable_id
from pixgate.spec.request import MAX_SEED, GenerationRequest, HiresFix, LoraRef

NAMES = FieldNames(
    size="size_id",
    n="number",
    steps="steps",
    sampler="simper",
    hires="hire",
    guidance="cfg_scale",
    strength="denoising_strength",
)
# pixgate field -> this dialect's field, for the ones it fills with its own default
DEFAULTED = {"guidance": "cfg_scale", "strength": "denoising_strength"}
HIRES_SCALE = 2.0  # hire=1: A1111's usual "upscale by 2"


class Image2ImageParams(BaseModel):
    """The `params` JSON string of `POST /api/image2image`. Ranges a model sets (number,
    steps, sizes) are checked against that model by `shape_request`. Strict: the seed's
    example sends numbers as JSON numbers, so `"seed": "5"` or `"hire": true` are 400s."""

    model_config = ConfigDict(extra="forbid", strict=True)

    number: int = Field(default=1, ge=1, description="Images to make (the model's max_images).")
    hire: int = Field(default=0, ge=0, le=1, description="1: hires fix, 2x at the strength.")
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1: random.")
    steps: int | None = Field(default=None, ge=1, description="None: the model's default (20).")
    cfg_scale: float = Field(default=7, ge=0, le=30)
    lora_scale: float = Field(default=75, ge=0, le=100, description="Percent: 75 -> 0.75.")
    denoising_strength: float = Field(
        default=70, ge=0, le=100, description="Percent of the input to rework: 70 -> 0.7."
    )
    as_prompt: bool = Field(
        default=False, description="The image is the prompt: prompt_enhancement on."
    )
    prompt: str = Field(default="", max_length=4000)
    size_id: str | None = Field(default=None, max_length=16, description="'1:1', '3:4', ...")
    model_id: str | None = Field(default=None, max_length=200)
    style_id: str | None = Field(default=None, max_length=64)
    simper: str | None = Field(default=None, max_length=64, description="A1111 sampler name.")
    negative_prompt: str | None = Field(default=None, max_length=4000)


def ratio_of(size: str) -> str:
    """'960x1280' -> '3:4'."""
    w, h = parse_size(size)
    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


def size_ids(spec: ModelSpec) -> list[str]:
    """The `size_id` values a model accepts, in the order of its sizes."""
    return list(dict.fromkeys(ratio_of(s) for s in spec.sizes))


def find_model(app_core: Pixgate, model_id: str | None) -> ModelSpec:
    """A model by its catalog id (GET /api/v1/draw/models) or its name; the default
    model when none is given."""
    if not model_id:
        return app_core.admission.default_model()
    models = app_core.admission.models()
    for spec in models:
        if model_id in (stable_id(spec.name), spec.name):
            return spec
    known = ", ".join(f"{stable_id(m.name)} ({m.name})" for m in models)
    raise invalid(
        "model_id",
        f"unknown model {model_id!r}; known: {known}",
        f"未知模型 {model_id!r};可选:{known}",
    )


def find_style(app_core: Pixgate, style_id: str | None) -> Style | None:
    """A style by its catalog id (GET /api/v1/draw/styles) or its own id."""
    if not style_id:
        return None
    styles = app_core.admission.styles()
    for style in styles:
        if style_id in (stable_id(style.id), style.id):
            return style
    known = ", ".join(f"{stable_id(s.id)} ({s.id})" for s in styles)
    raise invalid(
        "style_id",
        f"unknown style {style_id!r}; known: {known or 'none configured'}",
        f"未知风格 {style_id!r};可选:{known or '未配置'}",
    )


def pick_size(spec: ModelSpec, size_id: str | None, width: int, height: int) -> str:
    """`size_id` -> the model's largest size of that ratio; without one, the model's size
    nearest the input image's aspect ratio."""
    if not size_id:
        return closest_size(spec, width, height)
    size = size_for_ratio(spec, size_id.strip())
    if size is None:
        allowed = ", ".join(size_ids(spec))
        raise invalid(
            "size_id",
            f"{size_id!r} is not offered by model {spec.name}; allowed: {allowed}",
            f"模型 {spec.name} 不支持 {size_id!r},可选:{allowed}",
        )
    return size


def strength_of(percent: float) -> float:
    """0-100 -> 0.01-1. 0 would return the input untouched after no denoising step at
    all, which the pipelines cannot do; it is taken as the smallest strength, 0.01."""
    return max(percent, 1) / 100


def to_request(
    app_core: Pixgate, params: Image2ImageParams, width: int, height: int
) -> GenerationRequest:
    """The GenerationRequest for `params` and an input image of `width` x `height`, without
    the image itself (the caller stores it once everything else is valid)."""
    spec = find_model(app_core, params.model_id)
    prompt, negative = params.prompt, params.negative_prompt
    style = find_style(app_core, params.style_id)
    if style is not None:
        prompt, negative = style.apply(prompt, negative)
    strength = strength_of(params.denoising_strength)
    # The model's own LoRAs ([[models]] loras = [...]) at lora_scale; a model with none
    # has nothing for lora_scale to scale, and the field is accepted and unused.
    scale = params.lora_scale / 100
    return shape_request(
        spec,
        kind="img2img",
        strength=strength,
        prompt=prompt,
        negative_prompt=negative,
        size=pick_size(spec, params.size_id, width, height),
        n=params.number,
        steps=params.steps,
        guidance=params.cfg_scale,
        seed=None if params.seed == -1 else params.seed,
        prompt_enhancement=params.as_prompt,
        sampler=params.simper,
        lora=[LoraRef(name=name, scale=scale) for name in spec.loras],
        hires=HiresFix(scale=HIRES_SCALE, strength=strength) if params.hire else None,
        names=NAMES,
        defaulted=[f for f, own in DEFAULTED.items() if own not in params.model_fields_set],
    )
