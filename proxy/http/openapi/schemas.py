"""The request schemas of the document (responses: :mod:`proxy.http.openapi.responses`).

Every parameter's schema is derived from :class:`proxy.request.fields.ImageParams` (read through
``SPECS``: type, bounds, values, letter-case folding, other spellings, description and the
keywords that only document), so the document cannot drift from what the parser checks. They
state the gateway's universal bounds; each model narrows them further (``GET {base}/models``
shows its rules), and a value a model cannot take is a 400 naming the parameter.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from proxy.images.limits import MAX_IMAGES
from proxy.request.fields import ALIASES, SPECS

Schema = dict[str, Any]

UUID = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


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
    spec = SPECS[name]
    schema: Schema = {"type": spec.json_type}
    if spec.kind == "array of strings":
        schema["items"] = {"type": "string"}
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    if spec.choices is not None:
        # ECMA-262 patterns have no (?i): a folded field's values are spelt in every case.
        values = list(spec.choices)
        if spec.kind == "array of strings":
            schema["items"] |= ({"pattern": _any_case(values)} if spec.folded
                                else {"enum": values})
        elif spec.folded:
            schema |= {"pattern": _any_case(values), "examples": values}
        else:
            schema["enum"] = values
    schema |= copy.deepcopy(spec.schema_extra)
    if spec.examples:
        schema["examples"] = list(spec.examples)
    schema["description"] = spec.description
    return schema if form or spec.required else _nullable(schema)


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


def _parameters(*, form: bool, default_model: str | None) -> dict[str, Schema]:
    # Multipart text parts cannot carry arrays or objects: those fields are JSON-only.
    names = [n for n, spec in SPECS.items()
             if not form or spec.kind not in ("array of strings", "object")]
    properties = {name: field_schema(name, form=form) for name in names}
    properties["model"] = _model(properties["model"], default_model, form=form)
    return properties | _aliases(properties)


def _model(schema: Schema, default_model: str | None, *, form: bool) -> Schema:
    """``model`` as this gateway takes it: optional (``null`` too) when a model is the
    default, else a required name (a request without one is a 400 naming ``model``)."""
    schema = copy.deepcopy(schema)
    plain = schema if form else schema["anyOf"][0]
    if default_model is not None:
        plain["description"] += f" This gateway's default: `{default_model}`."
        return schema
    plain["minLength"] = 1
    plain["description"] = plain["description"].replace(
        "Default: the gateway's `default_model`.",
        "Required: this gateway has no `default_model`.")
    return plain


def _required(default_model: str | None) -> list[str]:
    return ["prompt"] if default_model is not None else ["model", "prompt"]


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


def request_schemas(default_model: str | None) -> dict[str, Schema]:
    """The request bodies of a gateway whose default model is ``default_model``."""
    json_params = _parameters(form=False, default_model=default_model)
    generation = {
        "type": "object",
        "required": _required(default_model),
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
        "required": _required(default_model),
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
        } | _parameters(form=True, default_model=default_model),
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
