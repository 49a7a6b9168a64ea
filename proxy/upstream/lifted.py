"""Large base64 images taken out of an upstream's JSON answer before it is parsed.

A 16 MB ``ImagesResponse`` is mostly four base64 strings. Parsing it makes Python strings of
them, and answering re-serialises them: two full passes and two copies of every image. Instead
each ``"b64_json": "<base64>"`` value of 64 KiB or more is lifted out as bytes, a marker is left
in its place, and only the small skeleton is parsed; the writer splices the bytes back between its
own fields (``proxy.http.responses.ImagesBody``). A value is lifted when its bytes are what the
JSON string holds, verbatim: ASCII without a backslash (two scans at memory speed, ~0.1 ms for a
1.5 MB image, where checking every byte against the base64 alphabet took 0.6-1.1 ms and was a
quarter of a long JSON job's CPU). Any other value stays in the JSON and is parsed as usual.
What the bytes are is the upstream's word, as it is for a parsed string: base64 is decoded only
where the gateway needs the image (hosting, conversion), and fails there as it would for a
string.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.nonces import nonce

LIFT_MIN = 64 * 1024
_KEY = b'"b64_json"'
_SPACE = b" \t\r\n"


def _verbatim(value: bytes) -> bool:
    """The string's value is these bytes as they are: ASCII, no escape. (A raw control
    character would make the upstream's JSON invalid; base64 has none, and it is not looked
    for byte by byte.)"""
    return value.isascii() and b"\\" not in value


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
    tag = nonce()
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
        if len(value) < LIFT_MIN or not _verbatim(value):
            continue  # small, escaped or not ASCII: parsed as usual
        marker = f"\x00lifted:{tag}:{len(lifted)}"
        lifted[marker] = value
        parts += (raw[done:start], orjson.dumps(marker)[1:-1])
        done = end
    if not lifted:
        return orjson.loads(raw), {}
    parts.append(raw[done:])
    return orjson.loads(b"".join(parts)), lifted
