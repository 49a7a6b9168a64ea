"""The request schemas of the document (responses: :mod:`proxy.openapi.responses`).

They are built from :mod:`proxy.params` (``FIELDS``, ``ENUMS``, ``ALIASES``,
``FOLDED``), so the document cannot drift from what the parser checks. They state the gateway's
universal bounds; each model narrows them further (``GET {base}/models`` shows its rules), and a
value a model cannot take is a 400 naming the parameter.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from proxy.edits.inputs import MAX_IMAGES
from proxy.params import ALIASES, ENUMS, FIELDS, FOLDED, FORBIDDEN_HEADERS

Schema = dict[str, Any]

SIZE = r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4}|[0-9]+(\.[0-9]+)?:[0-9]+(\.[0-9]+)?)$"
RATIO = r"^(auto|[0-9]+(\.[0-9]+)?:[0-9]+(\.[0-9]+)?)$"
UUID = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
# Some character that Python's str.strip() keeps (ECMA-262's \s is a different set).
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

_DESCRIPTIONS = {
    "model": "The model to use: a name or alias from `GET {base}/models` (`provider/model` "
             "spellings and retired preview ids resolve too). Default: the gateway's "
             "`default_model`. Unknown: 404 `model_not_found`.",
    "prompt": "What to draw. At most the model's `prompt_max` characters.",
    "n": "How many images (1-10; the model's `n_min`..`n_max`). Streaming takes the model's "
         "`stream_max_n` (1 for most).",
    "size": "`auto`, `WIDTHxHEIGHT` (models with a size range take any size inside it, e.g. "
            "gpt-image-2 and `local`), or for ratio-and-tier models (Gemini, Imagen, xAI) also "
            "`W:H`. Mapped onto what the model takes; the response's `size` is the image's own.",
    "quality": "One of the model's `qualities` (e.g. `auto`, `low`, `medium`, `high`, "
               "`standard`, `hd`).",
    "background": "`transparent` needs `output_format` `png` or `webp`.",
    "output_format": "One of the model's `output_formats` (`png`, `jpeg`, `webp`).",
    "output_compression": "0-100, for `jpeg` and `webp`.",
    "moderation": "Dropped (and reported) by models that do not take it.",
    "response_format": "`b64_json` (default for most models) or `url`: the gateway stores the "
                       "images and returns signed, expiring links to them. Streams are always "
                       "base64.",
    "style": "DALL-E 3 only.",
    "user": "Your end user's id: stored with the usage record; dropped by models without it.",
    "stream": "`true`: Server-Sent Events (`text/event-stream`) instead of JSON. Decided by "
              "this field only, never by `Accept`.",
    "partial_images": "Partial images to stream before the final one (0-3).",
    "seed": "Same prompt and seed, same image (`local`, `comfyui`, Imagen).",
    "negative_prompt": "What the image should not show (`comfyui`, Imagen).",
    "aspect_ratio": "`W:H`: for pixel-sized models, the nearest listed size (or about a "
                    "megapixel for models taking any size); `size` wins when both are sent.",
    "resolution": "A tier: `512`, `1K`, `2K`, `4K` (xAI `1k`, `2k`): Gemini, Imagen 4, xAI.",
    "thinking_level": "Gemini 3.1 Flash Image; any letter case.",
    "response_modalities": "Gemini: `[\"image\"]` or `[\"text\", \"image\"]`; any letter case. "
                           "Must include `image`.",
    "media_resolution": "Gemini: how finely reference images are read; any letter case.",
    "input_fidelity": "How closely edits keep the input image (gpt-image-1).",
    "metadata": "Your own record of the request: stored with its usage, never sent upstream.",
    "extra_headers": "Headers sent to the provider with the request. Credential and "
                     "connection headers are refused (400 naming `extra_headers`): "
                     + ", ".join(sorted(FORBIDDEN_HEADERS)) + ".",
}


def _any_case(values: list[str] | tuple[str, ...]) -> str:
    """A pattern matching exactly ``values`` in any letter case (ECMA-262 has no ``(?i)``)."""
    spelled = ("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in v)
               for v in values)
    return "^(" + "|".join(spelled) + ")$"


def _nullable(schema: Schema) -> Schema:
    """``null`` means absent, for every optional parameter."""
    return {"anyOf": [schema, {"type": "null"}]}


def field_schema(name: str, *, form: bool = False) -> Schema:
    """One parameter as the parser checks it. ``form``: a multipart text part (never null)."""
    kind, low, high = FIELDS[name]
    schema: Schema
    if kind == "array of strings":
        schema = {"type": "array", "items": {"type": "string"}}
    elif kind == "object":
        schema = {"type": "object"}
    else:
        schema = {"type": kind}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    if name in ENUMS:
        values = ENUMS[name]
        if name in FOLDED:
            schema |= {"pattern": _any_case(values), "examples": list(values)}
        else:
            schema["enum"] = list(values)
    if name == "response_modalities":
        schema["items"] = {"type": "string", "pattern": _any_case(("text", "image"))}
    elif name == "prompt":
        schema |= {"minLength": 1, "pattern": NOT_BLANK}
    elif name == "size":
        schema |= {"pattern": SIZE, "examples": ["auto", "1024x1024", "1536x1024", "16:9"]}
    elif name == "aspect_ratio":
        schema |= {"pattern": RATIO, "examples": ["1:1", "16:9", "9:16"]}
    elif name == "resolution":
        schema["examples"] = ["512", "1K", "2K", "4K"]
    elif name == "quality":
        schema["examples"] = ["auto", "low", "medium", "high", "standard", "hd"]
    elif name in ("output_format", "background"):
        schema["examples"] = {"output_format": ["png", "jpeg", "webp"],
                              "background": ["auto", "opaque", "transparent"]}[name]
    elif name == "extra_headers":
        schema |= {"propertyNames": {"pattern": "^[A-Za-z0-9-]+$"},
                   # Visible characters, spaces and tabs: no control characters.
                   "additionalProperties": {"type": "string",
                                            "pattern": r"^[^\x00-\x08\x0a-\x1f\x7f]*$"}}
    schema["description"] = _DESCRIPTIONS[name]
    return schema if form or name == "prompt" else _nullable(schema)


def _aliases(properties: dict[str, Schema]) -> dict[str, Schema]:
    """The published APIs' other spellings: the same schema, described as an alias."""
    out = {}
    for alias, name in ALIASES.items():
        if name in properties:
            schema = copy.deepcopy(properties[name])
            schema.pop("description", None)
            out[alias] = {**schema, "description": f"Another spelling of `{name}` (sending both "
                                                  "with different values is a 400)."}
    return out


def _parameters(*, form: bool) -> dict[str, Schema]:
    # Multipart text parts cannot carry arrays or objects: those fields are JSON-only.
    names = [n for n in FIELDS if not form or FIELDS[n][0] not in ("array of strings", "object")]
    properties = {name: field_schema(name, form=form) for name in names}
    return properties | _aliases(properties)


# 8x8 PNGs: an image and a mask (fully transparent: repaint everything) that fits it.
EXAMPLE_IMAGE = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42"
                 "mM8oaHBgA0wMeAAg1MCAOA4ASjhBhuDAAAAAElFTkSuQmCC")
EXAMPLE_MASK = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAYAAADED76LAAAAD0lEQVR42m"
                "NgGAUMDAwMAAEIAAEoUqMqAAAAAElFTkSuQmCC")

IMAGE_REF: Schema = {
    "description": "An input image: base64, a `data:image/...;base64,` URL, or an http(s) URL "
                   "(fetched by the gateway with SSRF protection), or `{\"image_url\": ...}` as "
                   "chat APIs nest it. PNG, JPEG or WebP, at most 50 MB.",
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "required": ["image_url"], "properties": {"image_url": {"anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "required": ["url"],
             "properties": {"url": {"type": "string", "minLength": 1}}},
        ]}}},
        {"type": "object", "required": ["url"],
         "properties": {"url": {"type": "string", "minLength": 1}}},
    ],
    "examples": [EXAMPLE_IMAGE],
}


def _image_list(description: str) -> Schema:
    return {"description": description, "anyOf": [
        {"$ref": "#/components/schemas/ImageReference"},
        {"type": "array", "minItems": 1, "maxItems": MAX_IMAGES,
         "items": {"$ref": "#/components/schemas/ImageReference"}},
    ]}


_MASK = ("A PNG with an alpha channel, the size of the first image, fully transparent where it "
         "is to change.")


def _json_image_fields(*, generation: bool) -> dict[str, Schema]:
    """The images of a JSON edit. In a generation body they are optional (``null``: absent);
    with an image it is an edit, without one a ``mask`` is just an unknown parameter."""
    images = ("Input images (up to 16; the model's `max_input_images`). The mask applies to "
              "the first.")
    fields = {
        "image": _image_list(images),
        "images": _image_list("OpenAI's spelling of `image`."),
        "mask": _nullable({"$ref": "#/components/schemas/ImageReference",
                           "examples": [EXAMPLE_MASK], "description": _MASK}),
    }
    if generation:
        fields = {"image": _nullable(fields["image"]), "images": _nullable(fields["images"]),
                  "mask": {"description": f"With `image`: {_MASK} Without one it is dropped "
                                          "(`x-dropped-params`), whatever it holds."}}
    return fields


def request_schemas() -> dict[str, Schema]:
    json_params = _parameters(form=False)
    generation = {
        "type": "object",
        "required": ["prompt"],
        "properties": json_params | _json_image_fields(generation=True),
        # Unknown parameters are dropped and listed in x-dropped-params (or, with
        # drop_unsupported: false, refused with 400 unknown_parameter).
        "additionalProperties": True,
        "description": "Every parameter the gateway knows. A body carrying `image` (or "
                       "`images`) is an edit. Unknown parameters, and parameters the model "
                       "does not take, are dropped and listed in `x-dropped-params` (400 "
                       "`unknown_parameter` / `unsupported_parameter` with "
                       "`drop_unsupported: false`).",
    }
    edit_json = {
        **copy.deepcopy(generation),
        "properties": json_params | _json_image_fields(generation=False),
        "anyOf": [{"required": ["image"]}, {"required": ["images"]}],
        "description": "An edit as JSON: the images by base64, data URL or http(s) URL.",
    }
    binary = {"type": "string", "format": "binary"}
    edit_form = {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "image": {**binary, "description": "One input image (PNG, JPEG or WebP; the type is "
                                               "read from the bytes)."},
            "image[]": {"type": "array", "items": binary, "minItems": 1, "maxItems": MAX_IMAGES,
                        "description": "Input images, repeated parts (a list, even of one)."},
            "images": {**binary, "description": "Read as `image`."},
            "images[]": {"type": "array", "items": binary, "minItems": 1,
                         "maxItems": MAX_IMAGES, "description": "Read as `image[]`."},
            "mask": {**binary, "description": "A PNG with an alpha channel, the size of the "
                                              "first image."},
        } | _parameters(form=True),
        "additionalProperties": {"type": "string"},
        "anyOf": [{"required": [name]} for name in ("image", "image[]", "images", "images[]")],
        "description": "Multipart as the official SDKs send it: files for the images, every "
                       "other parameter a text part (integers and booleans as their text). "
                       "`metadata`, `extra_headers` and `response_modalities` are JSON-only. "
                       "Unknown text parts are dropped and listed in `x-dropped-params`; a file "
                       "in any other part is a 400.",
    }
    return {"ImageReference": IMAGE_REF, "CreateImageRequest": generation,
            "CreateImageEditJsonRequest": edit_json, "CreateImageEditFormRequest": edit_form}
