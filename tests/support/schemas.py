"""Validate our bodies and events against OpenAI's own OpenAPI schemas (images subset, MIT).

``data/openai-images-schemas.json`` is copied from the official spec (see its ``source`` key).
Its ``size``/``quality`` enums predate gpt-image-2 and arbitrary sizes, so those two enums are
relaxed; every other rule (required fields, types, other enums) holds.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_RELAXED = ("size", "quality")


def _relax(node: Any) -> Any:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name in _RELAXED:
                if isinstance(props.get(name), dict):
                    props[name].pop("enum", None)
        for value in node.values():
            _relax(value)
    elif isinstance(node, list):
        for value in node:
            _relax(value)
    return node


@lru_cache(maxsize=1)
def _registry() -> Registry:
    raw = json.loads((Path(__file__).parent / "data" / "openai-images-schemas.json").read_text())
    schemas = _relax(copy.deepcopy(raw["schemas"]))
    resource = Resource.from_contents({"components": {"schemas": schemas}},
                                      default_specification=DRAFT202012)
    return Registry().with_resource("urn:openai", resource)


def validate(name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` fits schema ``name``."""
    schema = {"$ref": f"urn:openai#/components/schemas/{name}"}
    Draft202012Validator(schema, registry=_registry()).validate(instance)
