"""Provider ``imagen``: Imagen through ``:predict`` on Vertex AI (or the Gemini API).

One call draws all ``n`` images (``sampleCount``, always sent: the Gemini API defaults to 4).
Images removed by Imagen's safety filters are simply missing from ``predictions``; with
``includeRaiReason`` an entry says why, and the gateway lists it in ``filtered`` so a client
never gets fewer images without being told. No image at all is a 400 ``content_policy_violation``.
Shapes: ``../shared/reference/providers.md`` §C. Backends, auth and HTTP errors are shared with
the ``gemini`` provider (:mod:`proxy.providers.google.backend`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import orjson
from pydantic import model_validator

from proxy.core.errors import upstream_error
from proxy.core.events import Completed, Event, Image
from proxy.models.rules import ModelRules
from proxy.providers.base import Call, ProviderSettings
from proxy.providers.google.backend import (
    GoogleProvider,
    GoogleSettings,
    encoded,
    refuse_edits,
)
from proxy.providers.google.errors import Refusal

SafetySetting = Literal["block_low_and_above", "block_medium_and_above", "block_only_high",
                        "block_none"]


class ImagenSettings(GoogleSettings):
    # ``personGeneration`` / ``safetySetting`` parameters, sent when set.
    person_generation: Literal["dont_allow", "allow_adult", "allow_all"] | None = None
    safety_setting: SafetySetting | None = None
    # ``enhancePrompt`` (Vertex AI only): Imagen rewrites the prompt; the rewrite is returned
    # as ``revised_prompt``.
    enhance_prompt: bool | None = None

    vertex_only: ClassVar[tuple[str, ...]] = (*GoogleSettings.vertex_only, "enhance_prompt")

    @model_validator(mode="after")
    def _gemini_api_limits(self) -> ImagenSettings:
        if self.api_key is not None and self.person_generation == "allow_all":
            raise ValueError("person_generation 'allow_all' is refused by the Gemini API")
        if self.api_key is not None and self.safety_setting == "block_none":
            raise ValueError("safety_setting 'block_none' is refused by the Gemini API")
        return self


class ImagenProvider(GoogleProvider):
    name = "imagen"
    settings_class = ImagenSettings
    settings: ImagenSettings

    default_location = "us-central1"

    @classmethod
    def narrow_rules(cls, rules: ModelRules, settings: ProviderSettings,
                     config_dir: Path) -> ModelRules:
        """The Gemini API takes neither ``seed`` nor ``negativePrompt`` (Vertex AI does)."""
        assert isinstance(settings, ImagenSettings)
        if settings.vertex:
            return rules
        return rules.model_copy(update={"seed": False, "negative_prompt": False})

    def _payload(self, call: Call) -> dict[str, Any]:
        request = call.request
        vertex = self.backend.vertex
        params: dict[str, Any] = {"sampleCount": request.n, "includeRaiReason": True}
        if request.aspect_ratio:
            params["aspectRatio"] = request.aspect_ratio
        if request.resolution:
            params["sampleImageSize"] = request.resolution
        if request.negative_prompt is not None:
            params["negativePrompt"] = request.negative_prompt
        if request.seed is not None:
            params["seed"] = request.seed
            params["addWatermark"] = False  # Imagen ignores the seed while it watermarks
        if self.settings.enhance_prompt is not None:
            params["enhancePrompt"] = self.settings.enhance_prompt
        if vertex and request.output_format in ("png", "jpeg"):
            options: dict[str, Any] = {"mimeType": f"image/{request.output_format}"}
            if request.output_format == "jpeg" and request.output_compression is not None:
                options["compressionQuality"] = request.output_compression
            params["outputOptions"] = options
        if self.settings.person_generation:
            params["personGeneration"] = self.settings.person_generation
        if self.settings.safety_setting:
            params["safetySetting"] = self.settings.safety_setting
        return {"instances": [{"prompt": request.prompt}], "parameters": params}

    async def generate(self, call: Call) -> AsyncGenerator[Event, None]:
        refuse_edits(call.kind, self.model.name)
        request = call.request
        body = orjson.dumps(self._payload(call))
        answer = await self.post(call, "predict", body)
        found, filtered = read_predictions(answer)
        if not found:
            refusal = (Refusal(True, "RAI_FILTERED", " ".join(r.message for r in filtered))
                       if filtered else
                       Refusal(True, "NO_PREDICTIONS", "Imagen returned no image and no reason "
                               "(its safety filters most likely removed every image)."))
            raise refusal.error(self.model.name)

        output_format = request.output_format or "png"
        size = ""
        for index, (b64, enhanced) in enumerate(found):
            b64, width, height = await anyio.to_thread.run_sync(
                encoded, b64, output_format, request.output_compression)
            size = size or f"{width}x{height}"
            revised = enhanced if enhanced and enhanced != request.prompt else None
            yield Image(index, b64_json=b64, revised_prompt=revised)
        extras = {"filtered": [r.entry() for r in filtered]} if filtered else {}
        yield Completed(None, {"size": size, "output_format": output_format}, extras)


def read_predictions(body: Any) -> tuple[list[tuple[str, str | None]], list[Refusal]]:
    """``(images as (base64, enhanced prompt), filtered)`` from a ``:predict`` answer."""
    if not isinstance(body, dict):
        raise upstream_error("Google sent a body that is not a JSON object.",
                             code="upstream_invalid_response")
    predictions = body.get("predictions")
    images: list[tuple[str, str | None]] = []
    filtered: list[Refusal] = []
    for item in predictions if isinstance(predictions, list) else ():
        if not isinstance(item, dict):
            continue
        data = item.get("bytesBase64Encoded")
        if isinstance(data, str) and data:
            prompt = item.get("prompt")
            images.append((data, prompt if isinstance(prompt, str) else None))
        elif isinstance(item.get("raiFilteredReason"), str):
            filtered.append(Refusal(True, "RAI_FILTERED", item["raiFilteredReason"]))
        # Anything else (``safetyAttributes`` of the prompt, say) is not an image.
    return images, filtered
