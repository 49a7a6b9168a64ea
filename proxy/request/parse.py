"""Parse an image request's parameters: the first of two passes.

:func:`parse_params` checks types and universal limits (OpenAI's own bounds) through
:class:`proxy.request.fields.ImageParams`, where every field is declared, and knows nothing about
models. :func:`proxy.request.bind.bind` then holds the request against the chosen model's rules
and builds the :class:`~proxy.request.bound.ImageRequest` adapters read.
Every rejection is a 400 that names the parameter, with OpenAI's wording where OpenAI has one.
``null`` means absent throughout: clients and the official SDKs send explicit nulls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from proxy.core.errors import GatewayError, bad_value, invalid_param
from proxy.request.fields import ALIASES, SPECS, ImageParams


def _form_int(text: str) -> Any:
    try:
        return int(text.strip())
    except ValueError:
        return text  # refused by the type check, as the string it is


def _form_bool(text: str) -> Any:
    word = text.strip().lower()
    return word == "true" if word in ("true", "false") else text


# Multipart text parts are strings: integers and booleans are read from their text first.
_FORM_TEXT: dict[str, Callable[[str], Any]] = {
    name: {"integer": _form_int, "boolean": _form_bool}[spec.kind]
    for name, spec in SPECS.items() if spec.kind in ("integer", "boolean")
}
_INTEGERS = frozenset(name for name, spec in SPECS.items() if spec.kind == "integer")
_VALIDATE = ImageParams.__pydantic_validator__.validate_python

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}
# When several things are wrong, the client hears of the first of: a field's type, bound or value
# (in the order the fields were sent; a field and another spelling of it with different values,
# where that spelling was sent), a missing prompt, then these checks, in this order.
_LATE_CHECKS = ("extra_headers", "prompt")
# An error, and its rank among the others: the lowest is reported.
Failure = tuple[tuple[int, int, int], GatewayError]


class _Sent:
    """A body read for validation: nulls dropped, other spellings under the field's name."""

    __slots__ = ("at", "conflicts", "data", "shadowed", "unknown")

    def __init__(self, body: dict[str, Any], from_form: bool) -> None:
        self.data: dict[str, Any] = {}
        self.unknown: dict[str, Any] = {}
        # Where each field's value was sent (its key's place in the body).
        self.at: dict[str, int] = {}
        # Rare: a value overridden by a later spelling of the same field (it is checked too).
        self.shadowed: list[tuple[int, str, Any]] = []
        self.conflicts: list[Failure] = []
        data, at = self.data, self.at
        for place, (key, value) in enumerate(body.items()):
            if value is None:
                continue
            name = ALIASES.get(key, key)
            if name not in SPECS:
                self.unknown[name] = value
                continue
            if name != key and body.get(name) is not None and body[name] != value:
                self.conflicts.append(((0, place, 0), invalid_param(
                    key, f"'{key}' and '{name}' are the same parameter and were given different "
                         "values.")))
            if from_form and isinstance(value, str) and name in _FORM_TEXT:
                value = _FORM_TEXT[name](value)
            elif isinstance(value, float) and value.is_integer() and name in _INTEGERS:
                value = int(value)  # JSON Schema's integer: 6.0 is 6
            if name in data:
                self.shadowed.append((at[name], name, data[name]))
            data[name] = value
            at[name] = place

    def failures(self) -> list[Failure]:
        """The shadowed values' errors and the conflicts."""
        out = list(self.conflicts)
        for place, name, value in self.shadowed:
            try:
                _VALIDATE({name: value})
            except ValidationError as exc:
                errors = [e for e in exc.errors(include_url=False) if e["loc"][:1] == (name,)]
                out += _failures(errors, {name: value}, {name: place})
        return out


def parse_params(
    body: dict[str, Any], *, from_form: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Type-check the known fields of ``body``; returns ``(known, unknown)`` without nulls,
    other spellings under the field's name and folded values in lower case."""
    sent = _Sent(body, from_form)
    try:
        params = _VALIDATE(sent.data)
    except ValidationError as exc:
        failures = _failures(exc.errors(include_url=False), sent.data, sent.at)
        raise _first(failures + sent.failures()) from None
    if sent.conflicts or sent.shadowed:
        failures = sent.failures()
        if failures:
            raise _first(failures)
    values = params.__dict__
    return {name: values[name] for name in sent.data}, sent.unknown


def _first(failures: list[Failure]) -> GatewayError:
    return min(failures, key=lambda failure: failure[0])[1]


def _failures(errors: list[ErrorDetails], data: dict[str, Any],
              sent_at: dict[str, int]) -> list[Failure]:
    """Pydantic's errors as OpenAI words them, each with its rank (see ``_LATE_CHECKS``)."""
    by_field: dict[str, list[ErrorDetails]] = {}
    for error in errors:
        by_field.setdefault(str(error["loc"][0]), []).append(error)
    out = []
    for name, found in by_field.items():
        # An array's items may fail apart: any item of the wrong type makes the array so.
        error = next((e for e in found if _is_type_error(e)), found[0])
        if error["type"] == "missing":
            rank = (1, 0, 0)
        elif error["type"] == "refused" and name in _LATE_CHECKS:
            rank = (2 + _LATE_CHECKS.index(name), 0, 0)
        else:
            rank = (0, sent_at[name], 1)
        out.append((rank, _gateway_error(name, error, data.get(name))))
    return out


def _is_type_error(error: ErrorDetails) -> bool:
    if error["type"] == "literal_error":
        return not isinstance(error["input"], str)
    return error["type"] not in ("greater_than_equal", "less_than_equal", "missing", "refused")


def _gateway_error(name: str, error: ErrorDetails, value: Any) -> GatewayError:
    """One field's error, worded as OpenAI's API words it."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "missing":
        return invalid_param(name, f"Missing required parameter: '{name}'.",
                             code="missing_required_parameter")
    if kind == "refused":
        return invalid_param(name, ctx["message"], code=ctx["code"])
    if kind == "greater_than_equal":
        return invalid_param(name, f"Invalid '{name}': integer below minimum value. Expected a "
                                   f"value >= {ctx['ge']}, but got {value} instead.",
                             code="integer_below_min_value")
    if kind == "less_than_equal":
        return invalid_param(name, f"Invalid '{name}': integer above maximum value. Expected a "
                                   f"value <= {ctx['le']}, but got {value} instead.",
                             code="integer_above_max_value")
    spec = SPECS[name]
    if _is_type_error(error):
        article = "an" if spec.kind[0] in "ai" else "a"
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        return invalid_param(name, f"Invalid type for '{name}': expected {article} {spec.kind}, "
                                   f"but got {got} instead.", code="invalid_type")
    values = value if isinstance(value, list) else [value]
    shown = ",".join(v.lower() if spec.folded else v for v in values)
    return bad_value(name, shown, spec.choices or ())
