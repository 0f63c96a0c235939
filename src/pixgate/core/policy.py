"""LoRA names every request is checked for before anything is reserved, and the parsing
of LoRA lists as clients write them. Plain functions over the settings. (Blocked terms and
the prompt hook are the pre chain's steps: `pixgate.processing.pre`.)"""

from __future__ import annotations

from pixgate.db import ApiKey
from pixgate.errors import invalid
from pixgate.settings import Settings
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest, LoraRef, Watermark


def lora_refs(settings: Settings, value: str | list[LoraRef] | None) -> list[LoraRef]:
    """LoRAs as clients write them: 'name', 'name:scale', comma-separated, or a list;
    a missing scale is the LoRA's configured default."""
    if value is None:
        return []
    if not isinstance(value, str):
        return list(value)
    defaults = {lora.name: lora.default_scale for lora in settings.loras}
    refs = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, scale = part.partition(":")
        try:
            refs.append(
                LoraRef(name=name, scale=float(scale) if scale else defaults.get(name, 1.0))
            )
        except ValueError:
            raise invalid(
                "lora",
                f"{part!r} is not 'name' or 'name:scale' with a scale between 0 and 2",
                f"{part!r} 格式应为 'name' 或 'name:scale',scale 取值 0 到 2",
            ) from None
    return refs


def check_loras(settings: Settings, req: GenerationRequest, spec: ModelSpec) -> None:
    """Every LoRA the request names must be configured and allowed for its model."""
    configured = {lora.name for lora in settings.loras}
    allowed = set(spec.loras) if spec.loras else configured
    for ref in req.lora:
        if ref.name not in configured or ref.name not in allowed:
            known = ", ".join(sorted(allowed & configured)) or "none configured"
            raise invalid(
                "lora",
                f"unknown LoRA {ref.name!r} for model {spec.name}; known: {known}",
                f"模型 {spec.name} 没有 LoRA {ref.name!r};可选:{known}",
            )


def visible_mark(settings: Settings, key: ApiKey, req: GenerationRequest) -> Watermark | None:
    """The visible mark drawn on `req`'s images: the client's own (Volcengine's
    `logo_info`), else the deployment's explicit AI-generated label (GB 45438) when it is
    on for this key (`explicit_label`, which the key may override), else none."""
    if req.watermark is not None:
        return req.watermark
    wanted = settings.explicit_label if key.explicit_label is None else key.explicit_label
    if not wanted:
        return None
    return Watermark(
        text=settings.explicit_label_text,
        position=settings.explicit_label_position,
        opacity=settings.explicit_label_opacity,
    )
