"""Upstream channels: other image APIs a catalog model can be relayed to (`[[channels]]`),
and what each channel type can express.

A model is relayed with `source = "channel:NAME"` (one channel) or `channels = ["a", "b"]`
(failover across several); `upstream_model` names the model on the upstream. The relay
backend (pixgate.backends.relay) speaks each type's wire format; this module only describes
channels, so settings, admission and the backend agree on them without importing each
other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pixgate.money import to_minor

ChannelType = Literal["openai", "siliconflow", "volcengine", "ark", "a1111"]
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)

# Request fields beyond prompt, size and n that a client may set and a channel type may or
# may not be able to send upstream (pixgate's own names; dialects map theirs onto them).
OptionalField = Literal[
    "negative_prompt", "seed", "steps", "guidance", "sampler", "lora", "hires", "strength"
]


@dataclass(frozen=True)
class TypeInfo:
    """What one channel type can express: request kinds and optional fields."""

    kinds: frozenset[str]
    fields: frozenset[str]
    description: str


TYPE_INFO: dict[str, TypeInfo] = {
    "openai": TypeInfo(
        frozenset({"txt2img", "img2img", "inpaint", "variation"}),
        frozenset(),
        "OpenAI images API (generations, edits, variations); also another pixgate",
    ),
    "siliconflow": TypeInfo(
        frozenset({"txt2img", "img2img"}),
        frozenset({"negative_prompt", "seed", "steps", "guidance"}),
        "SiliconFlow images API (image_size, batch_size, num_inference_steps, ...)",
    ),
    "volcengine": TypeInfo(
        frozenset({"txt2img", "img2img"}),
        frozenset({"seed", "steps", "guidance"}),
        "Volcengine visual API CVProcess, V4-signed (req_key = upstream_model)",
    ),
    "ark": TypeInfo(
        frozenset({"txt2img", "img2img"}),
        frozenset({"seed", "guidance"}),
        "Volcengine Ark Seedream (POST /api/v3/images/generations)",
    ),
    "a1111": TypeInfo(
        frozenset({"txt2img", "img2img", "inpaint"}),
        frozenset({"negative_prompt", "seed", "steps", "guidance", "sampler", "strength", "hires"}),
        "AUTOMATIC1111 / Forge / SD.Next (/sdapi/v1/txt2img, /sdapi/v1/img2img)",
    ),
}

KIND_WORDS = {
    "txt2img": "text-to-image",
    "img2img": "image-to-image",
    "inpaint": "inpainting (a mask)",
    "variation": "variations",
}


def refused_kind(types: list[str], kind: str) -> list[str]:
    """The channel types among `types` that cannot do `kind`."""
    return [t for t in types if kind not in TYPE_INFO[t].kinds]


def refused_fields(types: list[str], given: set[str]) -> dict[str, list[str]]:
    """Field -> the channel types among `types` that cannot send it, for the fields of
    `given` that some channel cannot express."""
    out: dict[str, list[str]] = {}
    for name in sorted(given):
        lacking = [t for t in types if name not in TYPE_INFO[t].fields]
        if lacking:
            out[name] = lacking
    return out


class ChannelSpec(BaseModel):
    """One `[[channels]]` entry. Secrets are `SecretStr`: printed as `**********`, never in
    logs, errors, metrics or API answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: ChannelType
    base_url: str = Field(
        min_length=1,
        max_length=2000,
        description="The upstream's base URL, e.g. https://api.siliconflow.cn/v1 or "
        "https://visual.volcengineapi.com (paths are added per type).",
    )
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="Env var holding the API key.")
    access_key: SecretStr | None = Field(default=None, description="Volcengine access key id.")
    access_key_env: str | None = None
    secret_key: SecretStr | None = Field(default=None, description="Volcengine secret key.")
    secret_key_env: str | None = None
    region: str = Field(default="cn-north-1", max_length=64)
    service: str = Field(default="cv", max_length=64)
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher is tried first.")
    weight: float = Field(default=1.0, gt=0, le=1_000_000, description="Share within a priority.")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Calls in flight at once; more wait. None: no bound.",
    )
    upstream_price: Decimal = Field(
        default=Decimal(0), ge=0, description="What one image costs the operator, in currency."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers added to (or replacing those of) every call."
    )
    failure_threshold: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Failures within failure_window_seconds that open the breaker.",
    )
    failure_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    cooldown_seconds: float = Field(
        default=30.0, gt=0, le=86_400, description="How long an open breaker skips the channel."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {url!r}")
        return url.rstrip("/")

    @field_validator("upstream_price")
    @classmethod
    def _exact_price(cls, price: Decimal) -> Decimal:
        to_minor(price)
        return price

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not name or any(c in name for c in " :\r\n") or any(c in value for c in "\r\n"):
                raise ValueError(f"header {name!r} is not a valid header name and value")
        return headers

    @model_validator(mode="after")
    def _credentials(self) -> ChannelSpec:
        needed = ("access_key", "secret_key") if self.type == "volcengine" else ("api_key",)
        for name in ("api_key", "access_key", "secret_key"):
            value, env = getattr(self, name), getattr(self, f"{name}_env")
            if value is not None and env is not None:
                raise ValueError(f"give {name} or {name}_env, not both")
            if env is not None and not os.environ.get(env):
                raise ValueError(
                    f"{name}_env names the environment variable {env}, which is not set"
                )
        for name in needed:
            if self.type != "a1111" and self.secret(name) is None:
                raise ValueError(f"a {self.type} channel needs {name} (or {name}_env)")
        return self

    def secret(self, name: Literal["api_key", "access_key", "secret_key"]) -> str | None:
        """A credential's value, from the config or its environment variable."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            return value.get_secret_value()
        env = getattr(self, f"{name}_env")
        return os.environ.get(env) if env else None

    def secrets(self) -> list[str]:
        """Every credential value of the channel (to keep them out of messages)."""
        values = [self.secret(n) for n in ("api_key", "access_key", "secret_key")]  # type: ignore[arg-type]
        return [v for v in values if v]

    @property
    def upstream_price_minor(self) -> int:
        return to_minor(self.upstream_price)

    @property
    def info(self) -> TypeInfo:
        return TYPE_INFO[self.type]
