"""Per-model parameter rules: what a model accepts, as data.

``None`` for an option list means the model does not take that parameter at all, which is different
from an empty list. The catalog ships rules for known models; a config entry can override any field.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

SIZE_PATTERN = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})\Z")


class SizeRange(BaseModel):
    """Arbitrary ``WxH`` sizes within limits (gpt-image-2, the local renderer)."""

    model_config = ConfigDict(extra="forbid")

    multiple_of: int = Field(1, ge=1)
    min_edge: int = Field(1, ge=1)
    max_edge: int = Field(4096, ge=1)
    min_pixels: int = Field(1, ge=1)
    max_pixels: int = Field(4096 * 4096, ge=1)
    max_ratio: float = Field(1000.0, ge=1.0)

    def problem(self, width: int, height: int) -> str | None:
        """Why ``width x height`` is outside the range, or None when it fits."""
        if width % self.multiple_of or height % self.multiple_of:
            return f"width and height must be multiples of {self.multiple_of}"
        if min(width, height) < self.min_edge or max(width, height) > self.max_edge:
            return f"each edge must be between {self.min_edge} and {self.max_edge} pixels"
        pixels = width * height
        if not self.min_pixels <= pixels <= self.max_pixels:
            return f"total pixels must be between {self.min_pixels} and {self.max_pixels}"
        if max(width, height) / min(width, height) > self.max_ratio + 1e-9:
            ratio = f"{self.max_ratio:g}"
            return f"the aspect ratio must be between 1:{ratio} and {ratio}:1"
        return None


class ModelRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_max: int = Field(32000, ge=1)
    n_min: int = Field(1, ge=1)
    n_max: int = Field(10, ge=1)
    # Explicit sizes ("auto" included when the model takes it) and/or an arbitrary-size range.
    sizes: list[str] | None = None
    size_range: SizeRange | None = None
    # What ``auto`` (or no size) turns into, when the gateway knows; echoed as the resolved size.
    default_size: str | None = None
    # Models that take an aspect ratio and a resolution tier instead of pixels (Gemini, Imagen,
    # xAI): ``size`` is mapped onto the nearest of these. Tiers are spelt as the provider wants
    # them ("1K", "2k", "512").
    aspect_ratios: list[str] | None = None
    resolutions: list[str] | None = None
    qualities: list[str] | None = None
    default_quality: str | None = None
    output_formats: list[str] | None = None
    backgrounds: list[str] | None = None
    styles: list[str] | None = None
    output_compression: bool = False
    moderation: bool = False
    user: bool = True
    # ``seed`` (a gateway extension): the backend can reproduce an image from it.
    seed: bool = False
    # ``negative_prompt`` (a gateway extension): what the image should not show.
    negative_prompt: bool = False
    # Gemini-only request fields.
    thinking_levels: list[str] | None = None
    response_modalities: bool = False
    media_resolution: bool = False
    # What the model's own API offers; the first is its default (DALL-E: url). Any model can
    # answer with URLs: the gateway hosts the images.
    response_formats: list[str] = Field(default_factory=lambda: ["b64_json"])
    # The upstream streams partial images itself; otherwise the gateway emulates the stream.
    streaming: bool = False
    stream_max_n: int = Field(1, ge=1)
    edits: bool = False
    # Edits: how many input images, and whether ``input_fidelity`` is taken.
    max_input_images: int = Field(16, ge=1)
    input_fidelity: bool = False
    mask: bool = False
    # Unknown model on an OpenAI-compatible upstream: forward every parameter unvalidated and let
    # the upstream judge, instead of guessing rules.
    passthrough: bool = False

    def accepts_size(self, size: str) -> str | None:
        """None if ``size`` is accepted, else the reason it is not."""
        if self.sizes is None and self.size_range is None:
            return "this model does not take a size"
        if self.sizes and size in self.sizes:
            return None
        match = SIZE_PATTERN.match(size)
        if self.size_range is not None and match:
            return self.size_range.problem(int(match.group(1)), int(match.group(2)))
        if self.size_range is not None and size == "auto":
            return None
        return "unsupported size"


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def apply(self, rules: ModelRules) -> ModelRules:
        # Attribute values, not model_dump(): nested rules (size_range) must stay models.
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        return rules.model_copy(update=changes)


def _optional(info: FieldInfo) -> tuple[Any, FieldInfo]:
    """A field of ModelRules as an override: the same type and bounds, ``None`` by default."""
    field = copy.copy(info)
    field.default, field.default_factory = None, None
    return info.annotation | None, field


# Every field of ModelRules, all optional: what a catalog entry or a config entry changes.
# Derived, so that a new rule is declared once.
ModelRulesOverride = create_model(
    "ModelRulesOverride", __base__=_Override,
    **{name: _optional(info) for name, info in ModelRules.model_fields.items()})
