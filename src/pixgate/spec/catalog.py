"""The model catalog: what names clients may send, where their weights come from,
their price and their limits."""

from __future__ import annotations

import contextlib
import hashlib
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pixgate.money import to_minor

SourceKind = Literal["builtin", "local", "hub", "fake", "channel"]

# Sizes promised by the seed documents.
SILICONFLOW_SIZES = ["1024x1024", "512x1024", "768x512", "768x1024", "1024x576", "576x1024"]
YUECHENG_SIZES = ["1024x1024", "960x1280", "768x1024", "720x1280", "720x1440"]
# Volcengine (seed 002) takes any width and height from 256 to 768; images are made on the
# 8-pixel latent grid, so every multiple of 8 in that range is offered.
# Volcengine takes any width/height from 256 to 768 (size_range); these are listed.
VOLCENGINE_SIZES = ["256x256", "512x512", "512x768", "768x512", "768x768"]
VOLCENGINE_REQ_KEYS = ("high_aes_general_v21_L", "jimeng_high_aes_general_v21_L")
TINY_SD_SIZES = sorted(
    {"256x256", "512x512", "768x768", *SILICONFLOW_SIZES, *YUECHENG_SIZES},
    key=lambda s: tuple(int(p) for p in s.split("x")),
)


def parse_size(size: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768). Raises ValueError on anything else."""
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT, got {size!r}")
    return int(parts[0]), int(parts[1])


FLOW_MATCH_BUILTINS = ("builtin:tiny-sd3", "builtin:tiny-flux")


class ModelSpec(BaseModel):
    """One `[[models]]` entry of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    source: str = Field(
        default="",
        description="builtin:<name>, a local directory, a Hugging Face hub id (org/name), "
        "fake:<options> (the test and benchmark backend) or channel:<name> (upstream relay). "
        "May be left out when `channels` is given.",
    )
    channels: list[str] = Field(
        default_factory=list,
        description="[[channels]] this model is relayed to, with failover between them "
        '(`source = "channel:NAME"` is the same as one name here).',
    )
    upstream_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The model's name on the upstream (Volcengine: the req_key); default: name.",
    )
    channel_types: list[str] = Field(
        default_factory=list,
        description="Set when the config loads, from the model's channels: their types, which "
        "decide the request fields admission refuses.",
    )
    price: Decimal = Field(default=Decimal(0), ge=0, description="Currency per image.")
    sizes: list[str] = Field(default_factory=lambda: list(TINY_SD_SIZES))
    default_size: str = "1024x1024"
    size_range: tuple[int, int] | None = Field(
        default=None,
        description="(min, max): any WIDTHxHEIGHT with both sides multiples of 8 in this "
        "range is accepted too, beside `sizes`.",
    )
    max_steps: int = Field(default=100, ge=1, le=1000)
    default_steps: int = Field(default=20, ge=1)
    max_images: int = Field(default=4, ge=1, le=16)
    description: str = ""
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="Where the pipeline runs: auto (cuda, then mps, then cpu), cpu, mps, cuda:N.",
    )
    variant: str | None = Field(
        default=None,
        max_length=32,
        description="Weights variant to load, e.g. fp16 (files named *.fp16.safetensors).",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="auto: float16 on cuda/mps, float32 on cpu."
    )
    max_batch: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Images one forward pass may hold across compatible queued jobs "
        "(dynamic batching). None: 1 on cpu, where batching does not pay, 8 elsewhere.",
    )
    flow_match: bool | None = Field(
        default=None,
        description="A flow-matching model (SD3, FLUX), which takes the samplers Euler and "
        "Heun only. None: found out when it loads. Builtin builds know their own.",
    )
    loras: list[str] = Field(
        default_factory=list,
        description="Names of [[loras]] this model may use; empty: every configured LoRA.",
    )
    demo: bool = Field(
        default=False, description="Set by demo mode: a seed name served by random weights."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_relay(cls, data: Any) -> Any:
        """`source = "channel:NAME"` and `channels = [...]` are two spellings of the same
        thing: both end up set, consistently."""
        if not isinstance(data, dict):
            return data
        source, names = data.get("source") or "", data.get("channels") or []
        if isinstance(source, str) and source.startswith("channel:"):
            named = [n.strip() for n in source.removeprefix("channel:").split(",")]
            if not all(named):
                raise ValueError('source "channel:" must name channels: "channel:NAME"')
            if names and list(names) != named:
                raise ValueError(
                    f'give source = "channel:NAME" or channels = [...], not both ({source!r} '
                    f"and {list(names)!r})"
                )
            return {**data, "channels": named}
        if names:
            if source:
                raise ValueError(
                    f"a model with channels is relayed: leave out source (got {source!r})"
                )
            return {**data, "source": "channel:" + ",".join(names)}
        if not source:
            raise ValueError("source is required (or channels, for a relayed model)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _fit_default_steps(cls, data: Any) -> Any:
        """A model capped below 20 steps defaults to its cap rather than being invalid."""
        if isinstance(data, dict) and "default_steps" not in data and "max_steps" in data:
            with contextlib.suppress(TypeError, ValueError):  # max_steps' own check reports
                data = {**data, "default_steps": min(20, int(data["max_steps"]))}
        return data

    @field_validator("sizes")
    @classmethod
    def _valid_sizes(cls, sizes: list[str]) -> list[str]:
        if not sizes:
            raise ValueError("sizes must not be empty")
        for s in sizes:
            w, h = parse_size(s)
            if w % 8 or h % 8 or not (64 <= w <= 4096 and 64 <= h <= 4096):
                raise ValueError(f"size {s} must be multiples of 8 between 64 and 4096")
        return sizes

    @field_validator("price")
    @classmethod
    def _exact_price(cls, price: Decimal) -> Decimal:
        to_minor(price)
        return price

    @model_validator(mode="after")
    def _defaults_in_range(self) -> ModelSpec:
        if self.default_size not in self.sizes:
            raise ValueError(f"default_size {self.default_size} is not one of sizes")
        if self.default_steps > self.max_steps:
            raise ValueError("default_steps must not exceed max_steps")
        return self

    def offers(self, width: int, height: int) -> bool:
        """Whether the model generates at this size."""
        if f"{width}x{height}" in self.sizes:
            return True
        if self.size_range is None:
            return False
        low, high = self.size_range
        return all(low <= side <= high and side % 8 == 0 for side in (width, height))

    @property
    def is_flow_match(self) -> bool | None:
        """Whether the model is flow-matching, if known before loading it."""
        if self.source_kind == "builtin":
            return self.source in FLOW_MATCH_BUILTINS
        return self.flow_match

    @property
    def upstream_name(self) -> str:
        """What the model is called on its upstream channels."""
        return self.upstream_model or self.name

    @property
    def price_minor(self) -> int:
        return to_minor(self.price)

    @property
    def source_kind(self) -> SourceKind:
        """Where images come from: a builtin build, a local directory or a hub id (all
        diffusers), the fake backend (`fake:`), or an upstream channel (`channel:`)."""
        if self.source.startswith("builtin:"):
            return "builtin"
        if self.source.startswith("fake:"):
            return "fake"
        if self.source.startswith("channel:"):
            return "channel"
        if self.source.startswith(("/", "./", "../", "~")) or self.source.startswith("file:"):
            return "local"
        return "hub"


class LoraSpec(BaseModel):
    """One `[[loras]]` entry: a LoRA in a local .safetensors file (diffusers or kohya
    format), applied per request with a scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str = Field(description="Path of the .safetensors file.")
    default_scale: float = Field(default=1.0, ge=0, le=2)
    description: str = ""


TINY_SD = ModelSpec(
    name="tiny-sd",
    source="builtin:tiny-sd",
    sizes=TINY_SD_SIZES,
    default_size="512x512",
    description="Stable Diffusion architecture with small random weights: draws noise. "
    "For trying the API and for tests.",
)
# The other pipeline families, built the same way (engine/families.py). SD3 and FLUX need
# sizes in multiples of 16 (8x VAE, 2x2 patches): every TINY_SD_SIZES size is one.
TINY_SDXL = TINY_SD.model_copy(
    update={
        "name": "tiny-sdxl",
        "source": "builtin:tiny-sdxl",
        "description": "Stable Diffusion XL architecture (two CLIP text encoders) with small "
        "random weights: draws noise. For trying the API and for tests.",
    }
)
TINY_SD3 = TINY_SD.model_copy(
    update={
        "name": "tiny-sd3",
        "source": "builtin:tiny-sd3",
        "description": "Stable Diffusion 3 architecture (MMDiT, CLIP x2 + T5, flow matching) "
        "with small random weights: draws noise. For trying the API and for tests.",
    }
)
TINY_FLUX = TINY_SD.model_copy(
    update={
        "name": "tiny-flux",
        "source": "builtin:tiny-flux",
        "description": "FLUX.1 architecture (CLIP + T5, flow matching) with small random "
        "weights: draws noise. For trying the API and for tests.",
    }
)
TINY_MODELS = [TINY_SD, TINY_SDXL, TINY_SD3, TINY_FLUX]

# The seed model names with their real weights. Yuecheng-VisGen has no public weights, so it
# only exists in demo mode or when an operator maps it to a source of their own.
REAL_SEED_MODELS = [
    ModelSpec(
        name="FLUX.1-schnell",
        source="black-forest-labs/FLUX.1-schnell",
        sizes=SILICONFLOW_SIZES,
        flow_match=True,
        description="FLUX.1 [schnell] from the Hugging Face hub.",
    ),
    ModelSpec(
        name="stable-diffusion-3-5-large",
        source="stabilityai/stable-diffusion-3.5-large",
        sizes=SILICONFLOW_SIZES,
        flow_match=True,
        description="Stable Diffusion 3.5 Large from the Hugging Face hub.",
    ),
]


def demo_source(name: str) -> str:
    """The tiny builtin build of the family a seed model name really is, so demo mode runs
    the same pipeline class (and sampler family) as the real model: FLUX names ->
    tiny-flux, SD3 names -> tiny-sd3, SDXL names -> tiny-sdxl, anything else -> tiny-sd."""
    key = name.lower().replace("_", "-").replace(".", "-")
    if "flux" in key:
        return "builtin:tiny-flux"
    if any(m in key for m in ("stable-diffusion-3", "sd3", "sd-3")):
        return "builtin:tiny-sd3"
    if any(m in key for m in ("sdxl", "sd-xl", "stable-diffusion-xl", "-xl-", "xl-base")):
        return "builtin:tiny-sdxl"
    return "builtin:tiny-sd"


def demo_note(source: str) -> str:
    return f"DEMO: served by {source} (random weights, images are noise)."


_DEMO_NOTE = demo_note("builtin:tiny-sd")
DEMO_SEED_MODELS = [
    ModelSpec(
        name="FLUX.1-schnell",
        source=demo_source("FLUX.1-schnell"),
        sizes=SILICONFLOW_SIZES,
        description=demo_note(demo_source("FLUX.1-schnell")),
        demo=True,
    ),
    ModelSpec(
        name="stable-diffusion-3-5-large",
        source=demo_source("stable-diffusion-3-5-large"),
        sizes=SILICONFLOW_SIZES,
        description=demo_note(demo_source("stable-diffusion-3-5-large")),
        demo=True,
    ),
    ModelSpec(
        name="Yuecheng-VisGen/VisGen",
        source=demo_source("Yuecheng-VisGen/VisGen"),
        sizes=YUECHENG_SIZES,
        price=Decimal("0.2"),
        description=_DEMO_NOTE,
        demo=True,
    ),
    *(
        ModelSpec(
            name=req_key,
            source=demo_source(req_key),
            sizes=VOLCENGINE_SIZES,
            size_range=(256, 768),
            default_size="512x512",
            max_steps=200,
            default_steps=25,
            price=Decimal("0.2"),
            description=demo_note(demo_source(req_key)),
            demo=True,
        )
        for req_key in VOLCENGINE_REQ_KEYS
    ),
]


class Catalog:
    """Lookup of models by the name clients send."""

    def __init__(self, models: list[ModelSpec], default: str | None = None):
        self._models = {m.name: m for m in models}
        if default is not None and default not in self._models:
            raise ValueError(f"default_model {default!r} is not in the catalog")
        self._default = default

    @classmethod
    def build(cls, configured: list[ModelSpec], demo: bool, default: str | None = None) -> Catalog:
        """Configured models win; with none configured, serve the tiny builds (tiny-sd,
        tiny-sdxl, tiny-sd3, tiny-flux) and the seed names (demo builds in demo mode, real
        hub sources otherwise)."""
        models = list(configured) or [*TINY_MODELS, *([] if demo else REAL_SEED_MODELS)]
        if demo:
            names = {m.name for m in models}
            models += [m for m in DEMO_SEED_MODELS if m.name not in names]
        return cls(models, default)

    def get(self, name: str) -> ModelSpec | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self):
        return iter(self._models.values())

    def default(self) -> ModelSpec:
        """The model used when a request names none: `default_model`, else seed 001's
        default FLUX.1-schnell when served, else the first configured model."""
        name = self._default or ("FLUX.1-schnell" if "FLUX.1-schnell" in self._models else None)
        return self._models[name] if name else next(iter(self._models.values()))


class Style(BaseModel):
    """A named prompt template (seed 003's `style_id`): `{prompt}` marks where the client's
    prompt goes; `negative_prompt` is added to the client's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    name: str = ""
    template: str = Field(min_length=1, max_length=2000)
    negative_prompt: str = ""

    @field_validator("template")
    @classmethod
    def _has_slot(cls, template: str) -> str:
        if "{prompt}" not in template:
            raise ValueError("a style template must contain {prompt}")
        return template

    def apply(self, prompt: str, negative: str | None) -> tuple[str, str | None]:
        styled = self.template.replace("{prompt}", prompt)  # no str.format: braces are text
        negatives = [n for n in (negative, self.negative_prompt) if n]
        return styled, ", ".join(negatives) or None


def size_for_ratio(spec: ModelSpec, ratio: str) -> str | None:
    """seed 003's `size_id` ('1:1', '3:4', '9:16', ...) -> the model's largest size with
    that aspect ratio, or None if it has none."""
    parts = ratio.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        return None
    want = int(parts[0]) / int(parts[1])
    matching = [s for s in spec.sizes if abs(parse_size(s)[0] / parse_size(s)[1] - want) < 0.01]
    return max(matching, key=lambda s: parse_size(s)[0] * parse_size(s)[1], default=None)


def stable_id(name: str) -> str:
    """A 32-hex id for a model name or style id that never changes while the name does
    not (seed 003's `model_id` / `style_id` look like this): the MD5 of the name."""
    return hashlib.md5(name.encode()).hexdigest()
