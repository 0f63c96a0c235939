"""Settings tables of the content steps that load or call something (the super-resolution
network, the output-image classifier, the prompt rewriter): plain models at the bottom, so
settings, the worker and processing share them."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pixgate.spec.fields import ENV_NAME, http_base


class UpscalerSpec(BaseModel):
    """`[upscaler]`: the super-resolution network `use_sr` / `upscale` runs (through
    spandrel); with no `model`, images are resized with Lanczos."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None,
        description="Path to SR weights (.safetensors or .pth: Real-ESRGAN, SPAN, SwinIR, ...).",
    )
    device: str | None = Field(
        default=None, description="Torch device; default: the worker's GPU, else the CPU."
    )
    tile: int = Field(
        default=512, ge=32, le=4096, description="Tile size in pixels for large images."
    )


class ImageModerationSpec(BaseModel):
    """`[image_moderation]`: at most one hook; neither set means no image is classified."""

    model_config = ConfigDict(extra="forbid")

    onnx_model: str | None = Field(
        default=None,
        description="Path of an ONNX classifier following pixgate's convention (see docs).",
    )
    entry_point: str | None = Field(
        default=None,
        description='"package.module:function": takes a PIL image, returns the unsafe score '
        "in 0..1.",
    )
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Images scoring at least this are refused."
    )
    input_size: int = Field(
        default=224, ge=1, le=4096, description="Side the ONNX model's input is resized to."
    )

    @field_validator("entry_point")
    @classmethod
    def _entry_point_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        module, sep, attr = value.partition(":")
        if not (sep and module.strip() and attr.strip()):
            raise ValueError(f'entry_point must look like "package.module:function", not {value!r}')
        return value.strip()

    @model_validator(mode="after")
    def _one_hook(self) -> ImageModerationSpec:
        if self.onnx_model is not None and self.entry_point is not None:
            raise ValueError(
                "[image_moderation] sets both onnx_model and entry_point: set only one"
            )
        return self

    @property
    def configured(self) -> bool:
        """Whether a classifier hook is set."""
        return self.onnx_model is not None or self.entry_point is not None


DEFAULT_SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-image model. Given the user's prompt, write one "
    "richer prompt that keeps its subject and every detail it asks for, and adds concrete "
    "visual detail: the setting, lighting, composition, colours, style and quality. Write it "
    "in the same language as the user's prompt. Output only the rewritten prompt, on one "
    "line, with no explanation, quotes or label."
)


class RewriterSpec(BaseModel):
    """`[rewriter]`: the OpenAI-compatible chat model prompts are rewritten with; unset, the
    offline expander rewrites them."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API base, e.g. https://api.deepseek.com/v1 "
        "(requests go to base_url + /chat/completions).",
    )
    model: str | None = Field(default=None, min_length=1, description="The chat model's name.")
    api_key: SecretStr | None = Field(default=None, description="Sent as a Bearer token.")
    api_key_env: str | None = Field(
        default=None, description="Name of an environment variable holding the key instead."
    )
    timeout_seconds: float = Field(
        default=10, ge=0.5, le=120, description="Longer than this, the offline expander runs."
    )
    system_prompt: str = Field(default=DEFAULT_SYSTEM_PROMPT, min_length=1, max_length=8000)
    max_tokens: int = Field(default=300, ge=16, le=4096)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_base("base_url", value)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(f"api_key_env must be an environment variable name, not {value!r}")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> RewriterSpec:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("[rewriter] sets both api_key and api_key_env: set only one")
        return self

    @property
    def configured(self) -> bool:
        """Whether a chat model is set (base_url and model)."""
        return self.base_url is not None and self.model is not None

    @property
    def chat_url(self) -> str:
        """The chat completions endpoint (only meaningful when `configured`)."""
        return f"{self.base_url}/chat/completions"

    def resolved_api_key(self) -> str | None:
        """The key: `api_key`, else the value of `api_key_env` now; None when neither."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if self.api_key_env is not None:
            return os.environ.get(self.api_key_env) or None
        return None
