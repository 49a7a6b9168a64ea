"""Hold a parsed image request against the chosen model's rules (the second pass after
:func:`proxy.params.parse_params`).

Limits the model sets (prompt length, n, sizes, enum values), what happens to a parameter it
cannot use (refused, or dropped when the gateway is told to drop), and the geometry a ratio model
needs. Every rejection is a 400 that names the parameter.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import invalid_param, unsupported_param
from proxy.models.rules import SIZE_PATTERN, ModelRules
from proxy.models.sizing import for_ratio_model, size_for_ratio
from proxy.params import CORE, COSMETIC, OPENAI_OPTIONAL, ImageRequest, bad_value


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
    policy = _Policy(model, drop_unsupported)

    n = known.get("n", 1)
    if not rules.n_min <= n <= rules.n_max:
        raise invalid_param(
            "n", f"Invalid 'n': model '{model}' supports n from {rules.n_min} to {rules.n_max}, "
                 f"but got {n}.",
        )
    request.n = n
    request.stream = known.get("stream", False)
    request.partial_images = known.get("partial_images", 0)
    if request.stream and n > rules.stream_max_n:
        raise invalid_param(
            "n", f"Streaming is only supported with n<={rules.stream_max_n} for model '{model}'.",
        )

    if rules.passthrough:
        # The upstream is the judge; forward what the client sent, only type-checked.
        for name in OPENAI_OPTIONAL:
            setattr(request, name, known.get(name))
        request.extra = {k: v for k, v in known.items()
                         if k not in OPENAI_OPTIONAL and k not in CORE} | unknown
        return request

    for name in unknown:
        if drop_unsupported:
            policy.dropped.append(name)
        else:
            raise invalid_param(name, f"Unknown parameter: '{name}'.", code="unknown_parameter")

    _apply_geometry(known, rules, request, policy)

    for name, allowed in (("quality", rules.qualities), ("background", rules.backgrounds),
                          ("output_format", rules.output_formats), ("style", rules.styles),
                          ("thinking_level", rules.thinking_levels)):
        if name not in known:
            continue
        if allowed is None:
            policy.unsupported(name)
        elif known[name] not in allowed:
            raise bad_value(name, known[name], allowed)
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

    response_format = known.get("response_format")
    if request.stream and response_format == "url":
        raise invalid_param("response_format",
                            "Streamed images are always base64: use 'b64_json' with stream.")
    # URLs are the gateway's own (hosted images), never an upstream's short-lived links: the
    # upstream is asked for base64 wherever it has the choice. A model whose own default is
    # URLs (DALL-E, xAI) keeps that default.
    wants = response_format or default_response_format or rules.response_formats[0]
    request.host_images = wants == "url" and not request.stream
    if len(rules.response_formats) > 1:
        request.response_format = "b64_json"

    if request.background == "transparent" and request.output_format == "jpeg":
        raise invalid_param(
            "background", "A transparent background needs output_format 'png' or 'webp'.",
        )
    if request.response_modalities is not None and "image" not in request.response_modalities:
        raise invalid_param("response_modalities",
                            "response_modalities must include 'image' on an image endpoint.")
    request.dropped = policy.dropped
    return request


def _check_size(size: str, rules: ModelRules, model: str) -> None:
    reason = rules.accepts_size(size)
    if reason == "unsupported size" and rules.sizes and rules.size_range is None:
        raise bad_value("size", size, rules.sizes)
    if reason is not None:
        if not SIZE_PATTERN.match(size) and size != "auto":
            reason = "expected 'auto' or WIDTHxHEIGHT, e.g. '1024x1024'"
        raise invalid_param("size", f"Invalid size '{size}' for model '{model}': {reason}.")


def _apply_geometry(known: dict[str, Any], rules: ModelRules, request: ImageRequest,
                    policy: _Policy) -> None:
    """``size``, ``aspect_ratio`` and ``resolution``, whichever way the model takes them."""
    size, ratio, tier = known.get("size"), known.get("aspect_ratio"), known.get("resolution")
    if rules.aspect_ratios:
        geometry = for_ratio_model(size, ratio, tier, rules)
        request.size = size if size and SIZE_PATTERN.match(size) else None
        request.aspect_ratio, request.resolution = geometry.aspect_ratio, geometry.resolution
        return
    if tier is not None:
        policy.unsupported("resolution")
    if size is None and ratio not in (None, "auto"):
        size = size_for_ratio(ratio, rules)
        if size is None:
            policy.unsupported("aspect_ratio")
    elif ratio is not None:
        policy.dropped.append("aspect_ratio")  # size says it all, and wins
    if size is None:
        return
    if rules.sizes is None and rules.size_range is None:
        policy.unsupported("size")
        return
    _check_size(size, rules, policy.model)
    request.size = size
