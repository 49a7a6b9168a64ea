"""A served model described for clients: which parameters it takes, of what type, which values.

``GET /v1/models`` returns this per model so a front-end can build its form from the answer
(the playground does) instead of hard-coding what each model accepts.
"""

from __future__ import annotations

from typing import Any

from proxy.models.rules import ModelRules


def _enum(values: list[str] | None) -> dict[str, Any] | None:
    return None if values is None else {"type": "string", "enum": list(values)}


def _size(rules: ModelRules) -> dict[str, Any] | None:
    if rules.aspect_ratios:
        # Any WxH is accepted and mapped onto the nearest ratio and tier.
        return {"type": "string", "format": "WxH", "maps_to": "aspect_ratio"}
    if rules.sizes is None and rules.size_range is None:
        return None
    spec: dict[str, Any] = {"type": "string"}
    if rules.sizes:
        spec["enum"] = list(rules.sizes)
    if rules.size_range is not None:
        spec["format"] = "WxH"
        spec["range"] = rules.size_range.model_dump()
    if rules.default_size:
        spec["default"] = rules.default_size
    return spec


def describe_parameters(rules: ModelRules) -> dict[str, Any]:
    """JSON-schema-like descriptors of every parameter the model accepts."""
    if rules.passthrough:
        return {"prompt": {"type": "string"}, "*": {"description": "forwarded to the upstream "
                                                                   "unvalidated"}}
    params: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": rules.prompt_max},
        "n": {"type": "integer", "minimum": rules.n_min, "maximum": rules.n_max},
        "stream": {"type": "boolean"},
        "partial_images": {"type": "integer", "minimum": 0, "maximum": 3,
                           "native": rules.streaming},
        "response_format": {"type": "string", "enum": list(rules.response_formats)},
    }
    optional: dict[str, dict[str, Any] | None] = {
        "size": _size(rules),
        "aspect_ratio": _enum(rules.aspect_ratios),
        "resolution": _enum(rules.resolutions),
        "quality": _enum(rules.qualities),
        "output_format": _enum(rules.output_formats),
        "background": _enum(rules.backgrounds),
        "style": _enum(rules.styles),
        "thinking_level": _enum(rules.thinking_levels),
    }
    if optional["quality"] is not None and rules.default_quality:
        optional["quality"]["default"] = rules.default_quality
    flags = {
        "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
        "moderation": {"type": "string", "enum": ["low", "auto"]},
        "user": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "negative_prompt": {"type": "string"},
        "response_modalities": {"type": "array", "items": {"enum": ["text", "image"]}},
        "media_resolution": {"type": "string", "enum": ["low", "medium", "high"]},
    }
    for name, spec in flags.items():
        if getattr(rules, name):
            optional[name] = spec
    params.update({k: v for k, v in optional.items() if v is not None})
    return params
