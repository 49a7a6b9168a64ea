"""The image request's fields, declared once.

:class:`ImageParams` is every parameter a client may send with an image request: its type, OpenAI's
universal bounds (``ge``/``le``; each model narrows them later), its closed set of values
(``Literal``), its other spellings (``validation_alias``), whether its letter case is folded
(:data:`FOLD`), its own checks, and its description. Everything else reads it:

- :func:`proxy.request.parse.parse_params` validates through it, worded as OpenAI words errors;
- :class:`proxy.request.parse.ImageRequest`, the request bound to a model, inherits its fields;
- :data:`SPECS` reads the declaration back as plain data for the OpenAPI request schemas
  (:mod:`proxy.http.openapi.schemas`) and the descriptors of ``GET {base}/models``
  (:mod:`proxy.request.describe`).

Images are split off before parsing: no image ever goes through this model.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

# Schema-only patterns: the parser leaves these to each model's rules (a 400 that names the model).
SIZE = r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4}|[0-9]+(\.[0-9]+)?:[0-9]+(\.[0-9]+)?)$"
RATIO = r"^(auto|[0-9]+(\.[0-9]+)?:[0-9]+(\.[0-9]+)?)$"
# Some character that Python's str.strip() keeps (ECMA-262's \s is a different set).
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# Headers a client may not set on the upstream request: credentials (the gateway's own are
# used), who is billed (an OpenAI organisation or project, a Google quota project: the operator's
# key decides), hop-by-hop, framing and encoding headers the HTTP client owns, and headers that
# would make an intermediary change the request (its method, its apparent origin).
FORBIDDEN_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "cookie", "set-cookie", "ocp-apim-subscription-key", "x-amz-security-token",
    "openai-organization", "openai-project", "x-goog-user-project",
    "host", "content-length", "content-type", "content-encoding", "transfer-encoding",
    "trailer", "connection", "te", "upgrade", "keep-alive", "expect", "proxy-connection",
    "forwarded", "via", "x-real-ip", "x-http-method-override", "x-http-method",
    "x-method-override",
})
# Whole families: every ``proxy-*`` header and every ``x-forwarded-*`` one.
FORBIDDEN_HEADER_PREFIXES = ("proxy-", "x-forwarded-")
# At most this many extra headers, and this many bytes of names and values together (what an
# upstream's own limits comfortably take; more is refused before anything is sent).
MAX_EXTRA_HEADERS = 32
MAX_EXTRA_HEADER_BYTES = 8192
# RFC 9110 field names (tokens) and values (visible ASCII, spaces and tabs).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,128}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,8192}")


def refusal(code: str, message: str) -> PydanticCustomError:
    """A check of the gateway's own failing: ``code`` and ``message`` reach the client as they
    are (:func:`proxy.request.parse.parse_params` reads them from the error's context)."""
    return PydanticCustomError("refused", "{message}", {"code": code, "message": message})


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# Case-insensitive values: Gemini spells its enums in capitals, the published APIs in lower case.
FOLD = BeforeValidator(_fold)


def _not_blank(prompt: str) -> str:
    if not prompt.strip():
        raise refusal("empty_string", "Invalid 'prompt': the prompt must not be empty.")
    return prompt


def forbidden_header(name: str) -> bool:
    """Whether a client may not set header ``name`` (any case) on the upstream request."""
    lower = name.lower()
    return lower in FORBIDDEN_HEADERS or lower.startswith(FORBIDDEN_HEADER_PREFIXES)


def _check_headers(headers: Any) -> Any:
    """A few printable headers, none the gateway owns. Runs before the type check, which
    refuses anything but an object of strings."""
    if not isinstance(headers, dict):
        return headers
    if len(headers) > MAX_EXTRA_HEADERS:
        raise refusal("too_many_headers", f"Invalid 'extra_headers': at most "
                      f"{MAX_EXTRA_HEADERS} headers may be sent, not {len(headers)}.")
    size = 0
    for name, value in headers.items():
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise refusal("invalid_type", f"Invalid 'extra_headers': the value of '{name}' must "
                                          "be printable ASCII on one line.")
        if forbidden_header(name) or not _HEADER_NAME.fullmatch(name.lower()):
            raise refusal("forbidden_header", f"Invalid 'extra_headers': '{name}' may not be set "
                          "by the client (credential, billing, connection and forwarding "
                          "headers are the gateway's own).")
        size += len(name) + len(value)
    if size > MAX_EXTRA_HEADER_BYTES:
        raise refusal("headers_too_large", f"Invalid 'extra_headers': at most "
                      f"{MAX_EXTRA_HEADER_BYTES} bytes of names and values may be sent, not "
                      f"{size}.")
    return headers


class ImageParams(BaseModel):
    """Every parameter of an image request, as a client sends it: ``None`` is absent. Other
    spellings (``validation_alias``) are the published APIs' own, the field's name first."""

    # Strict: a JSON string is never an integer. Form text is converted by the parser first.
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = Field(None, description=(
        "The model to use: a name or alias from `GET {base}/models` (`provider/model` spellings "
        "and retired preview ids resolve too). Default: the gateway's `default_model`. Unknown: "
        "404 `model_not_found`."))
    prompt: Annotated[str, AfterValidator(_not_blank)] = Field(
        description="What to draw. At most the model's `prompt_max` characters.",
        json_schema_extra={"minLength": 1, "pattern": NOT_BLANK})
    n: int | None = Field(None, ge=1, le=10, description=(
        "How many images (1-10; the model's `n_min`..`n_max`). Streaming takes the model's "
        "`stream_max_n` (1 for most)."))
    size: str | None = Field(None, json_schema_extra={"pattern": SIZE},
                             examples=["auto", "1024x1024", "1536x1024", "16:9"], description=(
        "`auto`, `WIDTHxHEIGHT` (models with a size range take any size inside it, e.g. "
        "gpt-image-2 and `local`), or for ratio-and-tier models (Gemini, Imagen, xAI) also "
        "`W:H` (one the model lists). Mapped onto what the model takes, and the mapping "
        "announced in `x-adjusted-params`; the response's `size` is the image's own."))
    quality: str | None = Field(None, examples=["auto", "low", "medium", "high", "standard", "hd"],
                                description="One of the model's `qualities` (e.g. `auto`, `low`, "
                                            "`medium`, `high`, `standard`, `hd`).")
    background: Literal["transparent", "opaque", "auto"] | None = Field(
        None, examples=["auto", "opaque", "transparent"],
        description="`transparent` needs `output_format` `png` or `webp`.")
    output_format: str | None = Field(None, examples=["png", "jpeg", "webp"], description=(
        "One of the model's `output_formats` (`png`, `jpeg`, `webp`)."))
    output_compression: int | None = Field(None, ge=0, le=100,
                                           description="0-100, for `jpeg` and `webp`.")
    moderation: Literal["low", "auto"] | None = Field(
        None, description="Dropped (and reported) by models that do not take it.")
    response_format: Literal["url", "b64_json"] | None = Field(None, description=(
        "`b64_json` (default for most models) or `url`: the gateway stores the images and "
        "returns signed, expiring links to them. Streams are always base64."))
    style: Literal["vivid", "natural"] | None = Field(None, description="DALL-E 3 only.")
    user: str | None = Field(None, description=(
        "Your end user's id: stored with the usage record; dropped by models without it."))
    stream: bool | None = Field(None, description=(
        "`true`: Server-Sent Events (`text/event-stream`) instead of JSON. Decided by this field "
        "only, never by `Accept`."))
    partial_images: int | None = Field(None, ge=0, le=3, description=(
        "Partial images to stream before the final one (0-3)."))
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description=(
        "Same prompt and seed, same image (`local`, `comfyui`, Imagen)."))
    negative_prompt: str | None = Field(None, description=(
        "What the image should not show (`comfyui`, Imagen)."))
    # For models that take a ratio and a tier instead of pixels (see proxy/models/sizing.py).
    aspect_ratio: str | None = Field(
        None, validation_alias=AliasChoices("aspect_ratio", "aspectRatio"),
        json_schema_extra={"pattern": RATIO}, examples=["1:1", "16:9", "9:16"], description=(
            "`W:H`: one the model lists for ratio models (another is a 400 naming it); for "
            "pixel-sized models, the nearest listed size (or about a megapixel for models taking "
            "any size), announced in `x-adjusted-params`; `size` wins when both are sent."))
    resolution: str | None = Field(
        None, validation_alias=AliasChoices("resolution", "imageSize"),
        examples=["512", "1K", "2K", "4K"],
        description="A tier: `512`, `1K`, `2K`, `4K` (xAI `1k`, `2k`): Gemini, Imagen 4, xAI.")
    # Gemini-only.
    thinking_level: Annotated[Literal["minimal", "low", "medium", "high"] | None, FOLD] = Field(
        None, validation_alias=AliasChoices("thinking_level", "thinking", "thinkingLevel",
                                            "reasoning_effort"),
        description="Gemini 3.1 Flash Image; any letter case.")
    response_modalities: list[Annotated[Literal["text", "image"], FOLD]] | None = Field(
        None,
        validation_alias=AliasChoices("response_modalities", "modalities", "responseModalities"),
        description="Gemini: `[\"image\"]` or `[\"text\", \"image\"]`; any letter case. Must "
                    "include `image`.")
    media_resolution: Annotated[Literal["low", "medium", "high"] | None, FOLD] = Field(
        None, validation_alias=AliasChoices("media_resolution", "mediaResolution"),
        description="Gemini: how finely reference images are read; any letter case.")
    input_fidelity: Literal["high", "low"] | None = Field(None, description=(
        "How closely edits keep the input image (gpt-image-1)."))
    # Kept with the job (usage ledger), never sent upstream.
    metadata: dict[str, Any] | None = Field(None, description=(
        "Your own record of the request: stored with its usage, never sent upstream."))
    # Sent to the provider with the request.
    extra_headers: Annotated[dict[str, str] | None, BeforeValidator(_check_headers)] = Field(
        None,
        json_schema_extra={"propertyNames": {"pattern": "^[A-Za-z0-9-]+$"},
                           "maxProperties": MAX_EXTRA_HEADERS,
                           # Visible characters, spaces and tabs: no control characters.
                           "additionalProperties": {"type": "string",
                                                    "pattern": r"^[^\x00-\x08\x0a-\x1f\x7f]*$"}},
        description=f"Headers sent to the provider with the request: at most "
                    f"{MAX_EXTRA_HEADERS}, {MAX_EXTRA_HEADER_BYTES} bytes of names and values "
                    "in all. Credential, billing, connection and forwarding headers are refused "
                    "(400 naming `extra_headers`): "
                    + ", ".join(sorted(FORBIDDEN_HEADERS))
                    + ", and every " + " and ".join(f"`{p}*`" for p in FORBIDDEN_HEADER_PREFIXES)
                    + " header.")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of :class:`ImageParams` read back as plain data."""

    name: str
    required: bool
    # As OpenAI's errors name it: "string", "integer", "boolean", "array of strings", "object".
    kind: str
    minimum: int | None
    maximum: int | None
    # The closed set of values (of the items, for an array), in declared order.
    choices: tuple[str, ...] | None
    folded: bool
    # Other spellings, without the field's own name.
    aliases: tuple[str, ...]
    description: str
    examples: list[Any] | None
    # Schema keywords that document rather than validate (the parser or the model checks them).
    schema_extra: dict[str, Any]

    @property
    def json_type(self) -> str:
        """The JSON Schema ``type``."""
        return "array" if self.kind == "array of strings" else self.kind


_KINDS = {str: "string", int: "integer", bool: "boolean", dict: "object"}


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """``tp`` without ``Annotated`` and ``| None``, and the metadata it was annotated with."""
    metadata: list[Any] = []
    while True:
        if get_origin(tp) is Annotated:
            tp, *more = get_args(tp)
            metadata += more
        elif get_origin(tp) in (Union, types.UnionType):
            (tp,) = [arg for arg in get_args(tp) if arg is not type(None)]
        else:
            return tp, metadata


def _spec(name: str, info: FieldInfo) -> FieldSpec:
    tp, metadata = _unwrap(info.annotation)
    metadata += info.metadata
    if get_origin(tp) is list:
        tp, more = _unwrap(get_args(tp)[0])
        metadata += more
        kind = "array of strings"
    else:
        kind = "string" if get_origin(tp) is Literal else _KINDS[get_origin(tp) or tp]
    choices = get_args(tp) if get_origin(tp) is Literal else None
    if kind == "array of strings" and tp is not str and choices is None:
        raise TypeError(f"{name}: arrays are of strings")
    alias = info.validation_alias
    aliases = alias.choices if isinstance(alias, AliasChoices) else []
    extra = info.json_schema_extra
    return FieldSpec(
        name=name, required=info.is_required(), kind=kind,
        minimum=next((m.ge for m in metadata if hasattr(m, "ge")), None),
        maximum=next((m.le for m in metadata if hasattr(m, "le")), None),
        choices=choices, folded=FOLD in metadata,
        aliases=tuple(a for a in aliases if isinstance(a, str) and a != name),
        description=info.description or "", examples=info.examples,
        schema_extra=dict(extra) if isinstance(extra, dict) else {},
    )


SPECS: dict[str, FieldSpec] = {name: _spec(name, info)
                               for name, info in ImageParams.model_fields.items()}
# Another spelling -> the field's name.
ALIASES: dict[str, str] = {alias: spec.name for spec in SPECS.values() for alias in spec.aliases}

# OpenAI's own optional parameters, forwarded as they are to OpenAI-dialect upstreams.
OPENAI_OPTIONAL = ("size", "quality", "background", "output_format", "output_compression",
                   "moderation", "response_format", "style", "user", "input_fidelity")
# Handled by the gateway itself, never forwarded as extras.
CORE = frozenset({"model", "prompt", "n", "stream", "partial_images", "metadata",
                  "extra_headers"})
# Parameters that do not change the image: when a model cannot use them they are dropped (and
# reported), never a reason to fail a paid request.
COSMETIC = frozenset({"user", "moderation"})

if not {*OPENAI_OPTIONAL, *CORE, *COSMETIC} <= SPECS.keys():
    raise RuntimeError("OPENAI_OPTIONAL, CORE and COSMETIC must name fields of ImageParams")
