"""The one internal request model every dialect translates into."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["txt2img", "img2img", "inpaint", "variation"]
OutputFormat = Literal["png", "jpeg", "webp"]

MAX_SEED = 9_999_999_999  # seeds 000/001: 0-9999999999


class GenerationRequest(BaseModel):
    """What to generate, already validated against the model's limits by the dialect.

    Stored as JSON on the job, so a worker on another machine sees exactly this.
    """

    model_config = ConfigDict(extra="forbid")

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
    prompt_enhancement: bool = False
    user: str | None = None

    def image_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n)]
