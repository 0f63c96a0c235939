"""The settings of what pixgate does to content: labels (GB 45438's implicit TC260 label,
C2PA credentials, the explicit visible label), super-resolution, prompt rewriting and
moderation. A mixin of `Settings` (settings.py), kept apart so each file stays one idea."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from pixgate.spec.content import ImageModerationSpec, RewriterSpec, UpscalerSpec
from pixgate.spec.request import WatermarkPosition


class ContentSettings(BaseModel):
    # --- labels ---------------------------------------------------------------------------
    aigc_label: bool = Field(
        default=True,
        description="Write GB 45438's implicit label (TC260 XMP, HMAC-signed) into every "
        "image file pixgate makes.",
    )
    aigc_producer: str = Field(
        default="pixgate",
        max_length=200,
        description="The label's ContentProducer: the operator's service provider code.",
    )
    aigc_propagator: str = Field(
        default="", max_length=200, description="The label's ContentPropagator code."
    )
    c2pa: bool = Field(
        default=False,
        description="Also embed C2PA content credentials (needs c2pa_cert and c2pa_key, "
        "and the c2pa-python package).",
    )
    c2pa_cert: Path | None = Field(
        default=None, description="PEM certificate chain C2PA manifests are signed with."
    )
    c2pa_key: Path | None = Field(default=None, description="PEM private key of c2pa_cert.")
    explicit_label: bool = Field(
        default=True,
        description="Draw the visible AI-generated label on every image (a key may "
        "override it); Volcengine's logo_info replaces it for that request.",
    )
    explicit_label_text: str = Field(
        default="AI生成", min_length=1, max_length=100, description="The visible label's text."
    )
    explicit_label_text_en: str = Field(
        default="AI generated",
        min_length=1,
        max_length=100,
        description="Drawn instead when no font with the label's glyphs is found, and for "
        "Volcengine's logo_info language 1.",
    )
    explicit_label_position: WatermarkPosition = Field(
        default="bottom-right", description="The corner the visible label is drawn in."
    )
    explicit_label_opacity: float = Field(default=0.85, ge=0.1, le=1)
    explicit_label_height: float = Field(
        default=0.05,
        ge=0.05,
        le=0.3,
        description="Label text height as a share of the image's shorter side (GB 45438: "
        "at least 5%).",
    )
    label_font: Path | None = Field(
        default=None,
        description="Font file with CJK glyphs for visible labels; default: the first "
        "system font found (scripts/setup installs fonts-wqy-microhei).",
    )
    # --- super-resolution, rewriting, moderation ------------------------------------------
    upscaler: UpscalerSpec = Field(default_factory=UpscalerSpec)
    rewriter: RewriterSpec = Field(default_factory=RewriterSpec)
    blocked_terms: list[str] = Field(
        default_factory=list,
        description="Prompts containing any of these (after normalising case, width, "
        "spacing, punctuation, zero-width characters and traditional characters) are "
        "refused (451).",
    )
    blocked_terms_file: Path | None = Field(
        default=None,
        description="A UTF-8 file of blocked terms, one per line ('#' comments); read again "
        "on SIGHUP or POST /admin/moderation/reload.",
    )
    image_moderation: ImageModerationSpec = Field(default_factory=ImageModerationSpec)

    @model_validator(mode="after")
    def _c2pa_files(self) -> ContentSettings:
        if self.c2pa:
            for name in ("c2pa_cert", "c2pa_key"):
                path = getattr(self, name)
                if path is None:
                    raise ValueError(f"c2pa = true needs {name} (a PEM file path)")
                if not Path(path).is_file():
                    raise ValueError(f"{name}: no such file: {path}")
        if self.blocked_terms_file is not None and not Path(self.blocked_terms_file).is_file():
            raise ValueError(f"blocked_terms_file: no such file: {self.blocked_terms_file}")
        if self.label_font is not None and not Path(self.label_font).is_file():
            raise ValueError(f"label_font: no such file: {self.label_font}")
        return self
