"""Parse and validate the parameters of an image request.

Two passes. :func:`parse_params` checks types and universal limits (OpenAI's own bounds) and knows
nothing about models. :func:`proxy.request_rules.apply_rules` then holds the request against the
chosen model's rules.
Every rejection is a 400 that names the parameter, with OpenAI's wording where OpenAI has one.
``null`` means absent throughout: clients and the official SDKs send explicit nulls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from proxy.edits.inputs import InputImage
from proxy.errors import GatewayError, invalid_param

_INT, _STR, _BOOL, _STRS, _OBJ = "integer", "string", "boolean", "array of strings", "object"

# name -> (type, minimum, maximum). Bounds are OpenAI's universal ones; per-model limits come later.
FIELDS: dict[str, tuple[str, int | None, int | None]] = {
    "model": (_STR, None, None),
    "prompt": (_STR, None, None),
    "n": (_INT, 1, 10),
    "size": (_STR, None, None),
    "quality": (_STR, None, None),
    "background": (_STR, None, None),
    "output_format": (_STR, None, None),
    "output_compression": (_INT, 0, 100),
    "moderation": (_STR, None, None),
    "response_format": (_STR, None, None),
    "style": (_STR, None, None),
    "user": (_STR, None, None),
    "stream": (_BOOL, None, None),
    "partial_images": (_INT, 0, 3),
    "seed": (_INT, 0, 2**32 - 1),
    "negative_prompt": (_STR, None, None),
    "aspect_ratio": (_STR, None, None),
    "resolution": (_STR, None, None),
    "thinking_level": (_STR, None, None),
    "response_modalities": (_STRS, None, None),
    "media_resolution": (_STR, None, None),
    "input_fidelity": (_STR, None, None),
    # Kept with the job (usage ledger) and forwarded as headers to the provider.
    "metadata": (_OBJ, None, None),
    "extra_headers": (_OBJ, None, None),
}

# Headers a client may not set on the upstream request: credentials (the gateway's own are
# used) and hop-by-hop or framing headers the HTTP client owns.
FORBIDDEN_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "cookie", "set-cookie", "ocp-apim-subscription-key", "x-amz-security-token",
    "x-goog-user-project", "host", "content-length", "content-type", "transfer-encoding",
    "connection", "te", "upgrade", "keep-alive", "expect",
})

# Other spellings of the same fields, as published APIs send them.
ALIASES = {
    "aspectRatio": "aspect_ratio",
    "imageSize": "resolution",
    "thinking": "thinking_level",
    "thinkingLevel": "thinking_level",
    "reasoning_effort": "thinking_level",
    "modalities": "response_modalities",
    "responseModalities": "response_modalities",
    "mediaResolution": "media_resolution",
}

# Fields whose values are a closed set in OpenAI's API; models narrow them further.
ENUMS: dict[str, tuple[str, ...]] = {
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
    "response_format": ("url", "b64_json"),
    "style": ("vivid", "natural"),
    "thinking_level": ("minimal", "low", "medium", "high"),
    "media_resolution": ("low", "medium", "high"),
    "input_fidelity": ("high", "low"),
}
# Case-insensitive enums (Gemini spells them in capitals, the published APIs in lower case).
FOLDED = frozenset({"thinking_level", "media_resolution", "response_modalities"})

# OpenAI's own optional parameters, forwarded as they are to OpenAI-dialect upstreams.
OPENAI_OPTIONAL = ("size", "quality", "background", "output_format", "output_compression",
                    "moderation", "response_format", "style", "user", "input_fidelity")
# Handled by the gateway itself, never forwarded as extras.
CORE = frozenset({"model", "prompt", "n", "stream", "partial_images", "metadata",
                   "extra_headers"})

# Parameters that do not change the image: when a model cannot use them they are dropped (and
# reported), never a reason to fail a paid request.
COSMETIC = frozenset({"user", "moderation"})

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}


@dataclass(slots=True)
class ImageRequest:
    """A validated request; only what the model accepts (and the client sent) is set."""

    model: str
    prompt: str
    n: int = 1
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    response_format: str | None = None
    style: str | None = None
    user: str | None = None
    stream: bool = False
    partial_images: int = 0
    seed: int | None = None
    negative_prompt: str | None = None
    # For models that take a ratio and a tier instead of pixels (see proxy/models/sizing.py).
    aspect_ratio: str | None = None
    resolution: str | None = None
    # Gemini-only.
    thinking_level: str | None = None
    response_modalities: list[str] | None = None
    media_resolution: str | None = None
    # Edits: the input images (the first is the one the mask applies to) and the mask.
    images: list[InputImage] = field(default_factory=list)
    # The client sent a list (``image[]`` parts or a JSON array), even of one image.
    images_listed: bool = False
    # The client asked for URLs: images are stored and the response carries their links.
    host_images: bool = False
    mask: InputImage | None = None
    input_fidelity: str | None = None
    # The client's own record of the request (stored with its usage, never sent upstream).
    metadata: dict[str, Any] | None = None
    # Sent to the provider with the request (credential headers are refused).
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Parameters the gateway does not know, forwarded as they are (passthrough models only).
    extra: dict[str, Any] = field(default_factory=dict)
    # Parameters dropped because the model cannot use them (reported in ``x-dropped-params``).
    dropped: list[str] = field(default_factory=list)

    def upstream_params(self) -> dict[str, Any]:
        """The OpenAI-named parameters that are set, for adapters that speak OpenAI's dialect."""
        out: dict[str, Any] = {}
        for name in ("n", *OPENAI_OPTIONAL):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return out


def _describe(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _coerce(name: str, kind: str, value: Any, from_form: bool) -> Any:
    """Type-check one value; form fields arrive as strings and are converted first."""
    if from_form and isinstance(value, str):
        try:
            if kind == _INT:
                return int(value.strip())
            if kind == _BOOL and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
        except ValueError:
            pass
    ok = {
        _STR: isinstance(value, str),
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _STRS: isinstance(value, list) and all(isinstance(v, str) for v in value),
        _OBJ: isinstance(value, dict),
    }[kind]
    if not ok:
        raise invalid_param(
            name,
            f"Invalid type for '{name}': expected {'an' if kind[0] in 'ai' else 'a'} {kind}, "
            f"but got {_describe(value)} instead.",
            code="invalid_type",
        )
    return value


def parse_params(
    body: dict[str, Any], *, from_form: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Type-check the known fields of ``body``; returns ``(known, unknown)`` without nulls."""
    known: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for sent, value in body.items():
        if value is None:
            continue
        name = ALIASES.get(sent, sent)
        if name != sent and name in body and body[name] is not None and body[name] != value:
            raise invalid_param(sent, f"'{sent}' and '{name}' are the same parameter and were "
                                "given different values.")
        spec = FIELDS.get(name)
        if spec is None:
            unknown[name] = value
            continue
        kind, low, high = spec
        value = _coerce(name, kind, value, from_form)
        if kind == _INT:
            if low is not None and value < low:
                raise invalid_param(
                    name,
                    f"Invalid '{name}': integer below minimum value. "
                    f"Expected a value >= {low}, but got {value} instead.",
                    code="integer_below_min_value",
                )
            if high is not None and value > high:
                raise invalid_param(
                    name,
                    f"Invalid '{name}': integer above maximum value. "
                    f"Expected a value <= {high}, but got {value} instead.",
                    code="integer_above_max_value",
                )
        if name in FOLDED:
            value = [v.lower() for v in value] if isinstance(value, list) else value.lower()
        if name == "response_modalities" and not set(value) <= {"text", "image"}:
            raise bad_value(name, ",".join(value), ("text", "image"))
        if name in ENUMS and value not in ENUMS[name]:
            raise bad_value(name, value, ENUMS[name])
        known[name] = value
    if "prompt" not in known:
        raise invalid_param("prompt", "Missing required parameter: 'prompt'.",
                            code="missing_required_parameter")
    if "extra_headers" in known:
        known["extra_headers"] = _check_headers(known["extra_headers"])
    if not known["prompt"].strip():
        raise invalid_param("prompt", "Invalid 'prompt': the prompt must not be empty.",
                            code="empty_string")
    return known, unknown


# RFC 9110 field names (tokens) and values (visible ASCII, spaces and tabs).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,128}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,8192}")


def _check_headers(headers: dict[str, Any]) -> dict[str, str]:
    checked = {}
    for name, value in headers.items():
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise invalid_param("extra_headers", f"Invalid 'extra_headers': the value of "
                                f"'{name}' must be printable ASCII on one line.",
                                code="invalid_type")
        lower = name.lower()
        if lower in FORBIDDEN_HEADERS or not _HEADER_NAME.fullmatch(lower):
            raise invalid_param(
                "extra_headers", f"Invalid 'extra_headers': '{name}' may not be set by the "
                "client (credential and connection headers are the gateway's own).",
                code="forbidden_header")
        checked[name] = value
    return checked


def bad_value(name: str, value: Any, allowed: list[str] | tuple[str, ...]) -> GatewayError:
    listed = ", ".join(f"'{v}'" for v in allowed)
    return invalid_param(name, f"Invalid value: '{value}'. Supported values are: {listed}.")
