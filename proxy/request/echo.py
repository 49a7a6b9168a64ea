"""The settings echoed back to the client: requested ones in partial events, resolved ones after."""

from __future__ import annotations

from proxy.core.events import Completed
from proxy.models.rules import ModelRules
from proxy.request.bound import ImageRequest


def requested_settings(request: ImageRequest) -> dict[str, str]:
    """What the client asked for, ``auto`` where it left a choice (stream events carry these)."""
    return {
        "size": request.size or "auto",
        "quality": request.quality or "auto",
        "background": request.background or "auto",
        "output_format": request.output_format or "png",
    }


def resolved_settings(request: ImageRequest, rules: ModelRules,
                      completed: Completed | None) -> dict[str, str]:
    """What was actually used, for the parameters this model has, as far as anyone knows.

    The upstream's own answer wins; then a concrete request value; then the model's default.
    ``auto`` never appears: OpenAI's ``ImagesResponse`` enums have no ``auto``.
    """
    told = completed.resolved if completed else {}
    candidates = {
        "background": (rules.backgrounds, request.background, "opaque"),
        "output_format": (rules.output_formats, request.output_format, "png"),
        "quality": (rules.qualities, request.quality, rules.default_quality),
        "size": (rules.sizes or rules.size_range, request.size, rules.default_size),
    }
    out: dict[str, str] = {}
    for name, (supported, asked, default) in candidates.items():
        # A parameter the model does not take is not echoed, unless it is a fact about the
        # image delivered (its size and format, read from the image itself).
        if not supported and not (name in ("size", "output_format") and name in told):
            continue
        value = told.get(name)
        if value is None:
            value = asked if asked not in (None, "auto") else default
        if value is not None:
            out[name] = value
    return out
