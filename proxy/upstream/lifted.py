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

from collections.abc import Sequence
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


def _value_start(raw: bytes, key_end: int) -> int | None:
    """Where the string value after a ``"b64_json"`` key begins (after its opening quote), if
    that value is a string and its opening quote is in ``raw``; None otherwise."""
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
    return at + 1


def _value_bounds(raw: bytes, key_end: int) -> tuple[int, int] | None:
    """Where the string value after a ``"b64_json"`` key starts and ends (its quotes excluded),
    if it is a string; None otherwise."""
    start = _value_start(raw, key_end)
    if start is None:
        return None
    end = raw.find(b'"', start)
    return (start, end) if end > 0 else None


def _marker(tag: str, index: int) -> str:
    return f"\x00lifted:{tag}:{index}"


def lift_raw(raw: bytes) -> tuple[bytes, dict[str, bytes]]:
    """``(skeleton, {marker: base64 bytes})``: ``raw`` with each large verbatim ``b64_json``
    value replaced by a marker (``raw`` itself when there is none), not parsed."""
    if len(raw) < LIFT_MIN:
        return raw, {}
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
        marker = _marker(tag, len(lifted))
        lifted[marker] = value
        parts += (raw[done:start], orjson.dumps(marker)[1:-1])
        done = end
    if not lifted:
        return raw, {}
    parts.append(raw[done:])
    return b"".join(parts), lifted


def lift_images(raw: bytes) -> tuple[Any, dict[str, bytes]]:
    """``(parsed skeleton, {marker: base64 bytes})``; raises ``orjson.JSONDecodeError`` like
    ``orjson.loads`` for a body that is not JSON."""
    skeleton, lifted = lift_raw(raw)
    return orjson.loads(skeleton), lifted


def lift_pieces(pieces: Sequence[bytes], start: int,
                end: int) -> tuple[bytes, dict[str, bytes]] | None:
    """:func:`lift_raw` of the text ``pieces[0][start:] + pieces[1:-1] + pieces[-1][:end]``
    (at least two pieces: a long SSE data line as it arrived) without joining it first.

    Joined, then lifted, each image was copied twice (the line, then the value out of it);
    here its bytes are joined once, straight from the pieces, when its key and opening quote
    are in the first piece and the value runs past it (an image event's usual shape). None
    otherwise: the caller joins the text and lifts it as usual."""
    first, last = pieces[0], len(pieces) - 1
    found = first.find(_KEY, start)
    value_start = None if found < 0 else _value_start(first, found + len(_KEY))
    if value_start is None or first.find(b'"', value_start) >= 0:
        return None
    parts: list[bytes | memoryview] = [memoryview(first)[value_start:]]
    for k in range(1, last + 1):
        limit = end if k == last else len(pieces[k])
        quote = pieces[k].find(b'"', 0, limit)
        if quote >= 0:
            break
        parts.append(pieces[k])
    else:
        return None  # the string does not end in the text: the parser will say so
    parts.append(memoryview(pieces[k])[:quote])
    value = b"".join(parts)
    del parts
    if len(value) < LIFT_MIN or not _verbatim(value):
        return None
    rest = [memoryview(pieces[k])[quote:limit], *pieces[k + 1:last]]
    if k < last:
        rest.append(memoryview(pieces[last])[:end])
    tail, lifted = lift_raw(b"".join(rest))  # any image after this one
    marker = _marker(nonce(), 0)
    skeleton = b"".join((memoryview(first)[start:value_start], orjson.dumps(marker)[1:-1],
                         tail))
    return skeleton, {marker: value, **lifted}
