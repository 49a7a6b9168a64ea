"""An upstream's large JSON ``ImagesResponse`` scanned as it arrives, so the gateway's answer can
be written while the upstream still sends it.

A 16 MB answer is mostly its images' base64. :class:`ImageScanner` is fed the upstream's
chunks; it finds each ``"b64_json": "`` of a ``data`` item and hands the string's bytes on as
:class:`Piece` s as they come, keeping only the small rest of the answer (its *skeleton*, a
marker in place of each image). Each ``data`` item is handed on as an :class:`Item` once it has
ended (a later field such as ``revised_prompt`` is known only then), and :meth:`finish` parses
the skeleton's top level (``usage``, ``size``, ...).

Nothing is handed on until the first image has :data:`START` bytes: until then every byte is
kept, and the scanner may *decline* (an image with a backslash or a non-ASCII byte, which is
not its base64 verbatim; an answer shaped otherwise; an answer that ends first): its caller
then parses :attr:`raw` as a whole. Once pieces went out, what would have declined raises
:class:`NotPassable` instead: the answer the client is reading cannot be completed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.core.nonces import nonce
from proxy.images.codec import b64_ends_complete

START = 256 * 1024
# More than this outside the images: not an answer worth passing through (or not one at all).
SKELETON_MAX = 1024 * 1024
_KEY = b'"b64_json"'
_SPACE = b" \t\r\n"
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')
_OPEN, _CLOSE, _QUOTE, _COLON = frozenset(b"{["), frozenset(b"}]"), ord('"'), ord(":")


class NotPassable(Exception):
    """The answer broke off, or turned out not to be one that passes through, after pieces of
    it were handed on."""


@dataclass(frozen=True, slots=True)
class Piece:
    index: int  # the image's (and its item's) index in ``data``
    data: bytes


@dataclass(frozen=True, slots=True)
class Item:
    """A ``data`` item that has ended; ``pieced``: its ``b64_json`` went out as pieces (and is
    not among ``fields``)."""

    index: int
    fields: dict[str, Any]
    pieced: bool


Output = Piece | Item


@dataclass(slots=True)
class ImageEnds:
    """What is checked of an image passed in pieces: its length and both ends."""

    index: int
    length: int = 0
    head: bytes = b""
    tail: bytes = b""

    def add(self, data: bytes) -> None:
        self.length += len(data)
        if len(self.head) < 16:
            self.head = (self.head + data[:16])[:16]
        self.tail = data[-16:] if len(data) >= 16 else (self.tail + data)[-16:]

    def complete(self) -> bool:
        return b64_ends_complete(self.head, self.tail, self.length)


def _items(skeleton: bytes) -> tuple[list[tuple[int, int]], bool]:
    """The spans of the ``data`` items that have ended, and whether the skeleton ends inside a
    ``data`` item (the one after them). Only for a skeleton that ends between tokens (or with
    a string's opening quote)."""
    depth, key, last, in_data = 0, b"", b"", False
    start, spans = 0, []
    for token in _TOKEN.finditer(skeleton):
        first = token.group()[0]
        if first == _QUOTE:
            last = token.group()
        elif first == _COLON:
            if depth == 1:
                key = last
        elif first in _OPEN:
            depth += 1
            if depth == 2:
                in_data = first == ord("[") and key == b'"data"'
            elif depth == 3 and in_data:
                start = token.start()
        else:
            if depth == 3 and in_data and first == ord("}"):
                spans.append((start, token.end()))
            depth -= 1
    return spans, depth == 3 and in_data


class ImageScanner:
    def __init__(self, start: int = START) -> None:
        self.start = start
        self.started = False  # pieces were handed on
        self.declined = False
        self.raw = bytearray()  # until started: every byte fed (after a decline too)
        self._skeleton = bytearray()
        self._pending = b""  # a key (or what follows it) not yet whole
        self._image: ImageEnds | None = None  # the image whose string is open
        self._passed: dict[int, bytes] = {}  # image index -> its marker
        self._held: list[Output] = []  # until started
        self._held_bytes = 0
        self._items = 0  # items handed on
        self._nonce = nonce()

    def feed(self, chunk: bytes) -> list[Output]:
        """What of the answer can be handed on now (nothing while holding, or declined)."""
        if self.declined:  # nothing went out: what follows is kept with the rest
            self.raw += chunk
            return []
        if not self.started:
            self.raw += chunk
        out: list[Output] = []
        buf = self._pending + chunk if self._pending else chunk
        self._pending = b""
        at = 0
        while at < len(buf) and not self.declined:
            at = self._in_image(buf, at, out) if self._image else self._outside(buf, at, out)
        if len(self._skeleton) > SKELETON_MAX:
            self._refuse("more than images")
        return self._release(out)

    def finish(self) -> tuple[list[Output], dict[str, Any]]:
        """The items not yet handed on and the parsed answer (images as markers), at the
        answer's end; ``([], {})`` when declined."""
        if self._image is not None:
            self._refuse("an answer that ended inside an image")
        if not self.started:
            self.declined = True
        if self.declined:
            return [], {}
        skeleton = bytes(self._skeleton + self._pending)
        spans, inside = _items(skeleton)
        try:
            body = orjson.loads(skeleton)
        except orjson.JSONDecodeError:
            raise NotPassable("an answer that is not valid JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if inside or not isinstance(data, list) or len(data) != len(spans):
            raise NotPassable("an answer whose images are not its 'data' items")
        out: list[Output] = []
        self._close_items(skeleton, spans, out)
        for index, marker in self._passed.items():
            item = data[index]
            if not isinstance(item, dict) or item.get("b64_json") != marker.decode():
                raise NotPassable("an answer whose images are not its 'data' items")
        return out, body

    def _refuse(self, why: str) -> None:
        if self.started:
            raise NotPassable(f"{why}, after its first bytes were passed on")
        self.declined = True

    def _release(self, out: list[Output]) -> list[Output]:
        if self.declined:
            return []
        if self.started:
            return out
        self._held += out
        self._held_bytes += sum(len(o.data) for o in out if isinstance(o, Piece))
        if self._held_bytes < self.start:
            return []
        self.started, self.raw = True, bytearray()
        held, self._held = self._held, []
        return held

    def _in_image(self, buf: bytes, at: int, out: list[Output]) -> int:
        image = self._image
        assert image is not None
        end = buf.find(b'"', at)
        stop = len(buf) if end < 0 else end
        if stop > at:
            data = buf if at == 0 and stop == len(buf) else buf[at:stop]
            if not data.isascii() or b"\\" in data:
                self._refuse("an image that is not plain base64")
                return len(buf)
            image.add(data)
            out.append(Piece(image.index, data))
        if end < 0:
            return len(buf)
        if not image.complete():
            if self.started:
                raise NotPassable(f"image {image.index} truncated or corrupt")
            self.declined = True  # the whole answer's parse says what is wrong
            return len(buf)
        self._skeleton += b'"'
        self._image = None
        return end + 1

    def _outside(self, buf: bytes, at: int, out: list[Output]) -> int:
        found = buf.find(_KEY, at)
        if found < 0:
            keep = max(at, len(buf) - len(_KEY) + 1)
            self._skeleton += buf[at:keep]
            self._pending = buf[keep:]
            return len(buf)
        value = _value_start(buf, found + len(_KEY))
        if value is None:  # the rest of it is yet to come
            self._skeleton += buf[at:found]
            self._pending = buf[found:]
            return len(buf)
        if value < 0:  # not a key, or its value is not a string: it stays in the skeleton
            self._skeleton += buf[at:found + len(_KEY)]
            return found + len(_KEY)
        self._skeleton += buf[at:value + 1]  # up to the string's opening quote
        self._open_image(out)
        return value + 1

    def _open_image(self, out: list[Output]) -> None:
        skeleton = bytes(self._skeleton)
        spans, inside = _items(skeleton)
        index = len(spans)
        if not inside or index in self._passed or (self._passed and index < max(self._passed)):
            self._refuse("an image outside the answer's 'data' items")
            return
        if not self._close_items(skeleton, spans, out):
            return
        marker = f"\x00pieces:{self._nonce}:{index}".encode()
        self._passed[index] = marker
        self._skeleton += orjson.dumps(marker.decode())[1:-1]
        self._image = ImageEnds(index)

    def _close_items(self, skeleton: bytes, spans: list[tuple[int, int]],
                     out: list[Output]) -> bool:
        """Hand on the items that ended since the last call; False when one is not JSON."""
        for index in range(self._items, len(spans)):
            begin, end = spans[index]
            try:
                fields = orjson.loads(skeleton[begin:end])
            except orjson.JSONDecodeError:
                self._refuse("an answer that is not valid JSON")
                return False
            pieced = index in self._passed
            if pieced:
                fields.pop("b64_json", None)
            out.append(Item(index, fields, pieced))
        self._items = len(spans)
        return True


def _value_start(buf: bytes, at: int) -> int | None:
    """Where the string value after a key ending at ``at`` opens (its quote); -1 when it is
    not a key with a string value; None when ``buf`` ends before that is known."""
    while at < len(buf) and buf[at] in _SPACE:
        at += 1
    if at == len(buf):
        return None
    if buf[at] != _COLON:
        return -1
    at += 1
    while at < len(buf) and buf[at] in _SPACE:
        at += 1
    if at == len(buf):
        return None
    return at if buf[at] == _QUOTE else -1
