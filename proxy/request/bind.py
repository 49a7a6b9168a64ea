"""Bind a parsed image request to one model: :func:`bind`, the second pass after
:func:`proxy.request.parse.parse_params`, used for the model a client named and again for each
fallback model.

Limits the model sets (prompt length, n, sizes, enum values), what happens to a parameter it
cannot use (refused, or dropped when the gateway is told to drop), the geometry a ratio model
needs, and an edit's input images held to the model's limits. Every rejection is a 400 that names
the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.core.errors import bad_value, invalid_param, unsupported_param
from proxy.images.inputs import InputImage, check_mask
from proxy.models.rules import SIZE_PATTERN, ModelRules
from proxy.models.sizing import Adjustment, for_ratio_model, size_for_ratio, takes_ratio
from proxy.request.bound import ImageRequest
from proxy.request.fields import CORE, COSMETIC, OPENAI_OPTIONAL


class Target(Protocol):
    """What binding needs of a model (a served model is one)."""

    @property
    def name(self) -> str: ...

    @property
    def rules(self) -> ModelRules: ...

    @property
    def drop_unsupported(self) -> bool: ...


@dataclass(slots=True)
class ParsedRequest:
    """What the client sent, parsed but bound to no model yet: kept with the job, so a fallback
    model can be held to its own rules."""

    known: dict[str, Any]
    unknown: dict[str, Any] = field(default_factory=dict)
    # The mount's default response_format (the root mount answers with URLs).
    response_format: str | None = None
    editing: bool = False
    images: list[InputImage] = field(default_factory=list)
    mask: InputImage | None = None
    # The client sent a list of images (``image[]`` parts, a JSON array), even of one.
    listed: bool = False


def bind(parsed: ParsedRequest, target: Target) -> ImageRequest:
    """The request as ``target`` will run it; a GatewayError when it cannot."""
    request = apply_rules(parsed.known, parsed.unknown, target.name, target.rules,
                          drop_unsupported=target.drop_unsupported,
                          default_response_format=parsed.response_format)
    if parsed.editing:
        attach_images(request, target, parsed.images, parsed.mask, parsed.listed)
    return request


class _Policy:
    """Decides what happens to a parameter the model cannot use."""

    def __init__(self, model: str, drop_unsupported: bool) -> None:
        self.model = model
        self.drop_unsupported = drop_unsupported
        self.dropped: list[str] = []

    def unsupported(self, name: str) -> None:
        if name in COSMETIC or self.drop_unsupported:
            self.dropped.append(name)
            return
        raise unsupported_param(name, self.model)


def apply_rules(
    known: dict[str, Any],
    unknown: dict[str, Any],
    model: str,
    rules: ModelRules,
    *,
    drop_unsupported: bool,
    default_response_format: str | None = None,
) -> ImageRequest:
    """Hold the parsed parameters against one model's rules."""
    prompt: str = known["prompt"]
    if len(prompt) > rules.prompt_max:
        raise invalid_param(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{rules.prompt_max}, but got a string with length {len(prompt)} instead.",
            code="string_above_max_length",
        )
    request = ImageRequest(model=model, prompt=prompt, metadata=known.get("metadata"),
                           extra_headers=known.get("extra_headers", {}))
    _apply_counts(known, rules, request)
    if rules.passthrough:
        # The upstream is the judge; forward what the client sent, only type-checked.
        for name in OPENAI_OPTIONAL:
            if name in known:  # the rest keep their default, None
                setattr(request, name, known[name])
        request.extra = {k: v for k, v in known.items()
                         if k not in OPENAI_OPTIONAL and k not in CORE} | unknown
        return request
    policy = _Policy(model, drop_unsupported)
    for name in unknown:
        if not drop_unsupported:
            raise invalid_param(name, f"Unknown parameter: '{name}'.", code="unknown_parameter")
        policy.dropped.append(name)
    _apply_geometry(known, rules, request, policy)
    _apply_options(known, rules, request, policy)
    _apply_response_format(known, rules, request, default_response_format)
    if request.background == "transparent" and request.output_format == "jpeg":
        raise invalid_param(
            "background", "A transparent background needs output_format 'png' or 'webp'.",
        )
    if request.response_modalities is not None and "image" not in request.response_modalities:
        raise invalid_param("response_modalities",
                            "response_modalities must include 'image' on an image endpoint.")
    request.dropped = policy.dropped
    return request


def _apply_counts(known: dict[str, Any], rules: ModelRules, request: ImageRequest) -> None:
    """``n``, ``stream`` and ``partial_images``, within the model's limits."""
    n = known.get("n", 1)
    if not rules.n_min <= n <= rules.n_max:
        raise invalid_param(
            "n", f"Invalid 'n': model '{request.model}' supports n from {rules.n_min} to "
                 f"{rules.n_max}, but got {n}.",
        )
    request.n = n
    request.stream = known.get("stream", False)
    request.partial_images = known.get("partial_images", 0)
    if request.stream and n > rules.stream_max_n:
        raise invalid_param(
            "n", f"Streaming is only supported with n<={rules.stream_max_n} for model "
                 f"'{request.model}'.",
        )


def _apply_options(known: dict[str, Any], rules: ModelRules, request: ImageRequest,
                   policy: _Policy) -> None:
    """The optional parameters: values from the model's lists, and the ones it takes or not."""
    for name, allowed in (("quality", rules.qualities), ("background", rules.backgrounds),
                          ("output_format", rules.output_formats), ("style", rules.styles),
                          ("thinking_level", rules.thinking_levels)):
        if name not in known:
            continue
        if allowed is None:
            policy.unsupported(name)
        elif known[name] not in allowed:
            raise bad_value(name, known[name], allowed, request.model)
        else:
            setattr(request, name, known[name])
    for name, supported in (("output_compression", rules.output_compression),
                            ("moderation", rules.moderation), ("user", rules.user),
                            ("seed", rules.seed),
                            ("negative_prompt", rules.negative_prompt),
                            ("response_modalities", rules.response_modalities),
                            ("media_resolution", rules.media_resolution),
                            ("input_fidelity", rules.input_fidelity)):
        if name in known:
            if supported:
                setattr(request, name, known[name])
            else:
                policy.unsupported(name)


def _apply_response_format(known: dict[str, Any], rules: ModelRules, request: ImageRequest,
                           default: str | None) -> None:
    """URLs are the gateway's own (hosted images), never an upstream's short-lived links: the
    upstream is asked for base64 wherever it has the choice. A model whose own default is URLs
    (DALL-E, xAI) keeps that default."""
    response_format = known.get("response_format")
    if request.stream and response_format == "url":
        raise invalid_param("response_format",
                            "Streamed images are always base64: use 'b64_json' with stream.")
    wants = response_format or default or rules.response_formats[0]
    request.host_images = wants == "url" and not request.stream
    if len(rules.response_formats) > 1:
        request.response_format = "b64_json"


def _check_size(size: str, rules: ModelRules, model: str) -> None:
    reason = rules.accepts_size(size)
    if reason == "unsupported size" and rules.sizes and rules.size_range is None:
        raise bad_value("size", size, rules.sizes, model)
    if reason is not None:
        if not SIZE_PATTERN.match(size) and size != "auto":
            reason = "expected 'auto' or WIDTHxHEIGHT, e.g. '1024x1024'"
        raise invalid_param("size", f"Invalid size '{size}' for model '{model}': {reason}.")


def _apply_geometry(known: dict[str, Any], rules: ModelRules, request: ImageRequest,
                    policy: _Policy) -> None:
    """``size``, ``aspect_ratio`` and ``resolution``, whichever way the model takes them. A
    value the model does not offer in its own spelling is refused; one spelling turned into
    the other is recorded in ``request.adjusted`` (the ``x-adjusted-params`` header)."""
    size, ratio, tier = known.get("size"), known.get("aspect_ratio"), known.get("resolution")
    if rules.aspect_ratios:
        geometry = for_ratio_model(size, ratio, tier, rules)
        request.size = size if size and SIZE_PATTERN.match(size) else None
        request.aspect_ratio, request.resolution = geometry.aspect_ratio, geometry.resolution
        request.adjusted.extend(str(a) for a in geometry.adjusted)
        if geometry.unused:
            policy.dropped.append(geometry.unused)
        return
    if tier is not None:
        policy.unsupported("resolution")
    if size is None and ratio not in (None, "auto"):
        if not takes_ratio(rules):
            policy.unsupported("aspect_ratio")
            return
        size = size_for_ratio(ratio, rules)
        request.adjusted.append(str(Adjustment(("aspect_ratio", ratio), (("size", size),))))
    elif ratio is not None:
        policy.dropped.append("aspect_ratio")  # size says it all, and wins
    if size is None:
        return
    if rules.sizes is None and rules.size_range is None:
        policy.unsupported("size")
        return
    _check_size(size, rules, policy.model)
    request.size = size


def attach_images(request: ImageRequest, served: Target, images: list[InputImage],
                  mask: InputImage | None, listed: bool) -> None:
    """An edit's input images (and mask) on a bound request, held to the model's limits."""
    rules = served.rules
    if not rules.edits:
        raise invalid_param("model", f"Model '{served.name}' cannot edit images.",
                            code="model_cannot_edit")
    if not images:
        raise invalid_param("image", "Missing required parameter: 'image'.",
                            code="missing_required_parameter")
    if len(images) > rules.max_input_images:
        raise invalid_param("image", f"Too many images: model '{served.name}' takes at most "
                            f"{rules.max_input_images}, got {len(images)}.",
                            code="too_many_images")
    request.images = images
    request.images_listed = listed
    if mask is not None:
        if rules.mask:
            check_mask(mask, images[0])
            request.mask = mask
        elif served.drop_unsupported:
            request.dropped.append("mask")
        else:
            raise unsupported_param("mask", served.name)
