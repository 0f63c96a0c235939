"""The one internal request model every dialect translates into."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Kind = Literal["txt2img", "img2img", "inpaint", "variation"]
OutputFormat = Literal["png", "jpeg", "webp"]

MAX_SEED = 9_999_999_999  # seeds 000/001: 0-9999999999
WatermarkPosition = Literal["bottom-right", "bottom-left", "top-left", "top-right"]


class LoraRef(BaseModel):
    """A configured LoRA and the weight it is applied with (0 = no effect)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    scale: float = Field(default=1.0, ge=0, le=2)


class HiresFix(BaseModel):
    """Generate at the requested size, upscale by `scale`, then refine with img2img at
    `strength` (AUTOMATIC1111's "hires fix"). The output is the upscaled size."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(default=2.0, ge=1, le=4)
    strength: float = Field(default=0.5, gt=0, le=1)
    steps: int | None = Field(default=None, ge=1, le=1000, description="None: the request's.")


class Watermark(BaseModel):
    """A visible text mark drawn on every image (Volcengine's logo_info)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100)
    position: WatermarkPosition = "bottom-right"
    opacity: float = Field(default=0.3, ge=0, le=1)


class GenerationRequest(BaseModel):
    """What to generate, already validated against the model's limits by the dialect.

    Stored as JSON on the job, so a worker on another machine sees exactly this. Fields it
    does not know are ignored, at the top and inside `lora`, `hires` and `watermark`: during
    a rolling upgrade a newer API node may store fields an older worker has never heard of,
    and the worker must run the job rather than fail it. Clients never reach this model
    directly (dialects build it through `shape_request`), and the dialect models, including
    their use of `LoraRef` and `HiresFix`, keep refusing unknown fields.
    """

    model_config = ConfigDict(extra="ignore")

    kind: Kind = "txt2img"
    model: str
    prompt: str
    negative_prompt: str | None = None
    width: int = Field(ge=64, le=4096)
    height: int = Field(ge=64, le=4096)
    n: int = Field(ge=1, le=16)
    seed: int = Field(ge=0, le=MAX_SEED, description="Image i uses seed + i.")
    steps: int = Field(ge=1, le=1000)
    guidance: float = Field(ge=0, le=50)
    output_format: OutputFormat = "png"
    output_compression: int | None = Field(default=None, ge=0, le=100)
    sampler: str | None = Field(default=None, description="A1111 sampler name; None: the model's.")
    image: str | None = Field(default=None, description="Storage path of the input image.")
    mask: str | None = Field(
        default=None, description="Storage path of the mask (white = repaint)."
    )
    strength: float | None = Field(default=None, ge=0, le=1, description="img2img denoising.")
    lora: list[LoraRef] = Field(default_factory=list)
    hires: HiresFix | None = None
    # post-processing, applied by the worker after decoding (pixgate.processing.postprocess)
    prompt_enhancement: bool = False
    llm_seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="Seed of the prompt rewriter; None: `seed`."
    )
    original_prompt: str | None = Field(
        default=None, description="The client's prompt, when `prompt` is a rewrite of it."
    )
    rewriter: str | None = Field(default=None, description="What rewrote it: llm | offline.")
    upscale: Literal[1, 2, 4] = Field(default=1, description="Super-resolution factor.")
    watermark: Watermark | None = None
    user: str | None = None
    dialect: str | None = Field(default=None, description="The API it came in through.")
    defaulted: list[str] = Field(
        default_factory=list,
        description="Fields (steps, guidance) filled with the model's or dialect's default "
        "rather than set by the client; relays leave them to the upstream's own defaults.",
    )

    @field_validator("lora", "hires", "watermark", mode="before")
    @classmethod
    def _drop_unknown_nested(cls, value: Any, info: ValidationInfo) -> Any:
        """Stored dicts lose the keys their model lacks; model instances pass untouched."""
        known = _NESTED[info.field_name].model_fields
        if isinstance(value, list):
            return [_known_keys(item, known) for item in value]
        return _known_keys(value, known)

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the delivered images, after hires fix and upscaling."""
        w, h = self.width, self.height
        if self.hires is not None:
            w, h = hires_size(w, h, self.hires.scale)
        return w * self.upscale, h * self.upscale

    def image_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n)]

    def batch_key(self) -> tuple | None:
        """Requests with equal keys can share one forward pass (dynamic batching): same
        model, size, steps, sampler, guidance, LoRAs and hires fix; prompts, negative
        prompts and seeds may differ. None: this request runs alone (it has input images)."""
        if self.kind != "txt2img":
            return None
        return (
            self.model,
            self.width,
            self.height,
            self.steps,
            self.guidance,
            self.sampler,
            tuple((lo.name, lo.scale) for lo in self.lora),
            self.hires.model_dump_json() if self.hires else None,
        )


_NESTED: dict[str, type[BaseModel]] = {"lora": LoraRef, "hires": HiresFix, "watermark": Watermark}


def _known_keys(value: Any, known: dict[str, Any]) -> Any:
    return {k: v for k, v in value.items() if k in known} if isinstance(value, dict) else value


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires-fix size: `scale` times larger, rounded to the latent grid (8 px)."""
    return round(width * scale / 8) * 8, round(height * scale / 8) * 8
