"""Large base64 images taken out of an upstream's JSON answer before it is parsed.

A 16 MB ``ImagesResponse`` is mostly four base64 strings. Parsing it makes Python strings of
them, and answering re-serialises them: two full passes and two copies of every image. Instead
each ``"b64_json": "<base64>"`` value of 64 KiB or more is lifted out as bytes (checked to be
pure base64, no escapes), a marker is left in its place, and only the small skeleton is parsed;
the writer splices the bytes back between its own fields (``proxy.http.responses.ImagesBody``).
A value that is not plain base64 stays in the JSON and is parsed as usual.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

LIFT_MIN = 64 * 1024
_KEY = b'"b64_json"'
_SPACE = b" \t\r\n"
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _value_bounds(raw: bytes, key_end: int) -> tuple[int, int] | None:
    """Where the string value after a ``"b64_json"`` key starts and ends (its quotes excluded),
    if it is a string; None otherwise."""
    at = key_end
    while at < len(raw) and raw[at] in _SPACE:
        at += 1
    if raw[at:at + 1] != b":":
        return None
    at += 1
    while at < len(raw) and raw[at] in _SPACE:
        at += 1
    if raw[at:at + 1] != b'"':
        return None
    end = raw.find(b'"', at + 1)
    return (at + 1, end) if end > 0 else None


def lift_images(raw: bytes) -> tuple[Any, dict[str, bytes]]:
    """``(parsed skeleton, {marker: base64 bytes})``; raises ``orjson.JSONDecodeError`` like
    ``orjson.loads`` for a body that is not JSON."""
    if len(raw) < LIFT_MIN:
        return orjson.loads(raw), {}
    nonce = secrets.token_hex(8)
    lifted: dict[str, bytes] = {}
    parts: list[bytes] = []
    done = 0
    search = 0
    while (found := raw.find(_KEY, search)) >= 0:
        search = found + len(_KEY)
        bounds = _value_bounds(raw, search)
        if bounds is None:
            continue
        start, end = bounds
        value = raw[start:end]
        search = end + 1
        if len(value) < LIFT_MIN or value.translate(None, _ALPHABET):
            continue  # small, escaped or not base64: parsed as usual
        marker = f"\x00lifted:{nonce}:{len(lifted)}"
        lifted[marker] = value
        parts += (raw[done:start], orjson.dumps(marker)[1:-1])
        done = end
    if not lifted:
        return orjson.loads(raw), {}
    parts.append(raw[done:])
    return orjson.loads(b"".join(parts)), lifted
