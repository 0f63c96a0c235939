"""Fit a dialect's parsed fields to a model's limits and defaults, producing the internal
GenerationRequest. Shared by every dialect so limits are enforced the same everywhere;
dialects pass their own field names so errors name what the client sent."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from pixgate.errors import invalid
from pixgate.spec.catalog import ModelSpec, parse_size
from pixgate.spec.channels import KIND_WORDS, refused_fields, refused_kind
from pixgate.spec.request import (
    MAX_SEED,
    GenerationRequest,
    HiresFix,
    Kind,
    LoraRef,
    OutputFormat,
    Watermark,
    hires_size,
)
from pixgate.spec.samplers import find_sampler, sampler_names

MAX_HIRES_SIDE = 2048  # as AUTOMATIC1111 caps its hires fix


# img2img denoising strength when a request sets none (inpainting repaints the masked area)
DEFAULT_STRENGTH: dict[str, float] = {"img2img": 0.75, "inpaint": 1.0, "variation": 0.6}


@dataclass(frozen=True)
class FieldNames:
    """A dialect's names of the fields errors name."""

    size: str = "size"
    n: str = "n"
    steps: str = "num_inference_steps"
    sampler: str = "sampler"
    hires: str = "hires"
    seed: str = "seed"
    guidance: str = "guidance_scale"
    negative_prompt: str = "negative_prompt"
    strength: str = "strength"
    lora: str = "lora"
    model: str = "model"

    def of(self, field: str) -> str:
        """The dialect's name of one of pixgate's optional request fields."""
        return getattr(self, field, field)


def check_relay(
    spec: ModelSpec, kind: Kind, given: set[str], names: FieldNames = FieldNames()
) -> None:
    """Refuse, before anything is reserved, what a relayed model's channels cannot send
    upstream: a kind of request, or an optional field the client set (400 naming it and
    the model). A model with several channels takes only what all of them can express,
    since failover may land on any of them."""
    types = spec.channel_types
    if not types:
        return
    lacking = refused_kind(types, kind)
    if lacking:
        what = KIND_WORDS[kind]
        raise invalid(
            names.model,
            f"model {spec.name} is relayed to an upstream ({', '.join(sorted(set(lacking)))}) "
            f"that cannot do {what}",
            f"模型 {spec.name} 由上游({', '.join(sorted(set(lacking)))})提供,不支持{what}",
        )
    for field, lacking in refused_fields(types, given).items():
        param = names.of(field)
        upstream = ", ".join(sorted(set(lacking)))
        raise invalid(
            param,
            f"model {spec.name} is relayed to an upstream ({upstream}) that cannot take "
            f"{param}; leave it out",
            f"模型 {spec.name} 由上游({upstream})提供,不支持参数 {param},请不要传入",
        )


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def closest_size(spec: ModelSpec, width: int, height: int) -> str:
    """The model's size whose aspect ratio is nearest the input image's."""
    ratio = width / height

    def distance(size: str) -> float:
        w, h = parse_size(size)
        return abs(w / h - ratio)

    return min(spec.sizes, key=distance)


def shape_request(
    spec: ModelSpec,
    *,
    prompt: str,
    kind: Kind = "txt2img",
    image: str | None = None,
    mask: str | None = None,
    strength: float | None = None,
    negative_prompt: str | None = None,
    size: str | None = None,
    n: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    output_format: OutputFormat = "png",
    output_compression: int | None = None,
    prompt_enhancement: bool = False,
    llm_seed: int | None = None,
    user: str | None = None,
    sampler: str | None = None,
    lora: list[LoraRef] | None = None,
    hires: HiresFix | None = None,
    upscale: Literal[1, 2, 4] = 1,
    watermark: Watermark | None = None,
    names: FieldNames = FieldNames(),
    defaulted: Collection[str] = (),
) -> GenerationRequest:
    """`defaulted`: the fields (pixgate's names) whose value is the dialect's own default,
    not the client's: a relayed model's channels need not be able to send them."""
    given = {
        name
        for name, value in (
            ("negative_prompt", negative_prompt),
            ("seed", seed),
            ("steps", steps),
            ("guidance", guidance),
            ("sampler", sampler),
            ("lora", lora),
            ("hires", hires),
            ("strength", strength),
        )
        if value not in (None, "", []) and name not in defaulted
    }
    check_relay(spec, kind, given, names)
    if strength is None:
        strength = DEFAULT_STRENGTH.get(kind)
    size = spec.default_size if size in (None, "auto") else size.lower()
    try:
        width, height = parse_size(size)
    except ValueError:
        width = height = 0
    if not spec.offers(width, height):
        allowed = ", ".join(spec.sizes)
        if spec.size_range:
            low, high = spec.size_range
            allowed += f", or any multiples of 8 from {low} to {high} per side"
        raise invalid(
            names.size,
            f"{size} is not offered by model {spec.name}; allowed sizes: {allowed}",
            f"模型 {spec.name} 不支持 {size},可选尺寸:{allowed}",
        )
    n = 1 if n is None else n
    if not 1 <= n <= spec.max_images:
        raise invalid(
            names.n,
            f"must be an integer between 1 and {spec.max_images} for model {spec.name} (got {n})",
            f"模型 {spec.name} 的取值范围为 1 到 {spec.max_images}(收到 {n})",
        )
    steps = spec.default_steps if steps is None else steps
    if not 1 <= steps <= spec.max_steps:
        raise invalid(
            names.steps,
            f"must be an integer between 1 and {spec.max_steps} for model {spec.name} "
            f"(got {steps})",
            f"模型 {spec.name} 的取值范围为 1 到 {spec.max_steps}(收到 {steps})",
        )
    if sampler is not None:
        flow = spec.is_flow_match
        if flow is None:  # the family is known once the model loads
            found = find_sampler(sampler) or find_sampler(sampler, flow_match=True)
            known = ", ".join(sampler_names())
            flow_known = ", ".join(sampler_names(flow_match=True))
            detail = f"known: {known} (flow-matching models: {flow_known})"
        else:
            found = find_sampler(sampler, flow_match=flow)
            family = "flow-matching" if flow else "diffusion"
            detail = f"{family} model {spec.name} takes: " + ", ".join(
                sampler_names(flow_match=flow)
            )
        if found is None:
            anywhere = find_sampler(sampler) or find_sampler(sampler, flow_match=True)
            what = "does not fit this model" if anywhere else "is unknown"
            raise invalid(
                names.sampler,
                f"sampler {sampler!r} {what}; {detail}",
                f"采样器 {sampler!r} 不可用;{detail}",
            )
        sampler = found.name
    if hires is not None:
        out_w, out_h = hires_size(width, height, hires.scale)
        if max(out_w, out_h) > MAX_HIRES_SIDE:
            raise invalid(
                names.hires,
                f"scale {hires.scale:g} makes {out_w}x{out_h}; the hires fix output may be at "
                f"most {MAX_HIRES_SIDE} pixels on a side",
                f"放大倍数 {hires.scale:g} 得到 {out_w}x{out_h},高清修复输出边长不能超过 "
                f"{MAX_HIRES_SIDE}",
            )
    return GenerationRequest(
        kind=kind,
        image=image,
        mask=mask,
        strength=strength,
        model=spec.name,
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        width=width,
        height=height,
        n=n,
        seed=random_seed() if seed is None else seed,
        steps=steps,
        guidance=7.5 if guidance is None else guidance,
        output_format=output_format,
        output_compression=output_compression,
        prompt_enhancement=prompt_enhancement,
        llm_seed=llm_seed,
        user=user,
        sampler=sampler,
        lora=lora or [],
        hires=hires,
        upscale=upscale,
        watermark=watermark,
        defaulted=[f for f in ("steps", "guidance") if f not in given],
    )
