"""A served model described for clients: which parameters it takes, of what type, which values.

``GET /v1/models`` returns this per model so a front-end can build its form from the answer
(the playground does) instead of hard-coding what each model accepts. What a parameter is
(its type, the gateway's bounds, its values) comes from the request's one declaration,
:class:`proxy.request.fields.ImageParams`; which parameters a model takes, and the narrower
limits and values it sets, come from the model's rules.
"""

from __future__ import annotations

from typing import Any

from proxy.models.rules import ModelRules
from proxy.models.sizing import takes_ratio
from proxy.request.fields import SPECS

# Taken only by the models whose rules say so (a flag of the same name); the field's own
# descriptor, as the request declares it.
_FLAGS = ("output_compression", "moderation", "user", "seed", "negative_prompt",
          "response_modalities", "media_resolution")


def _field(name: str, **narrowed: Any) -> dict[str, Any]:
    """The field as the request declares it, with what a model narrows (``narrowed``)."""
    spec = SPECS[name]
    out: dict[str, Any] = {"type": spec.json_type}
    if spec.minimum is not None:
        out["minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if spec.choices is not None:
        if spec.kind == "array of strings":
            out["items"] = {"enum": list(spec.choices)}
        else:
            out["enum"] = list(spec.choices)
    return out | narrowed


def _enum(name: str, values: list[str] | None) -> dict[str, Any] | None:
    return None if values is None else _field(name, enum=list(values))


def _size(rules: ModelRules) -> dict[str, Any] | None:
    if rules.aspect_ratios:
        # Any WxH (or one of the ratios) is accepted and mapped onto the nearest ratio and
        # tier (announced in x-adjusted-params).
        return _field("size", format="WxH", maps_to="aspect_ratio")
    if rules.sizes is None and rules.size_range is None:
        return None
    spec = _field("size")
    if rules.sizes:
        spec["enum"] = list(rules.sizes)
    if rules.size_range is not None:
        spec["format"] = "WxH"
        spec["range"] = rules.size_range.model_dump()
    if rules.default_size:
        spec["default"] = rules.default_size
    return spec


def _aspect_ratio(rules: ModelRules) -> dict[str, Any] | None:
    if rules.aspect_ratios:
        return _field("aspect_ratio", enum=list(rules.aspect_ratios))
    if takes_ratio(rules):
        # Any W:H is accepted and mapped onto a size (announced in x-adjusted-params).
        return _field("aspect_ratio", format="W:H", maps_to="size")
    return None


def describe_parameters(rules: ModelRules) -> dict[str, Any]:
    """JSON-schema-like descriptors of every parameter the model accepts."""
    if rules.passthrough:
        return {"prompt": _field("prompt"), "*": {"description": "forwarded to the upstream "
                                                                 "unvalidated"}}
    params: dict[str, Any] = {
        "prompt": _field("prompt", minLength=1, maxLength=rules.prompt_max),
        "n": _field("n", minimum=rules.n_min, maximum=rules.n_max),
        "stream": _field("stream"),
        "partial_images": _field("partial_images", native=rules.streaming),
        "response_format": _field("response_format", enum=list(rules.response_formats)),
    }
    optional: dict[str, dict[str, Any] | None] = {
        "size": _size(rules),
        "aspect_ratio": _aspect_ratio(rules),
        "resolution": _enum("resolution", rules.resolutions),
        "quality": _enum("quality", rules.qualities),
        "output_format": _enum("output_format", rules.output_formats),
        "background": _enum("background", rules.backgrounds),
        "style": _enum("style", rules.styles),
        "thinking_level": _enum("thinking_level", rules.thinking_levels),
    }
    if optional["quality"] is not None and rules.default_quality:
        optional["quality"]["default"] = rules.default_quality
    for name in _FLAGS:
        if getattr(rules, name):
            optional[name] = _field(name)
    params.update({k: v for k, v in optional.items() if v is not None})
    return params
