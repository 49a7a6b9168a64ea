"""Server-Sent Events at the byte level, both directions.

Upstream events are split on blank lines without decoding: httpx's ``aiter_lines`` (and anything
built on ``str.splitlines``) also breaks on U+2028 and friends, which is not SSE. Nothing here caps
a line or an event; one image event can exceed 16 MiB. Our own events are written as pre-built
bytes because generic encoders regex-split multi-megabyte data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from proxy.core.nonces import nonce

_BOM = "\ufeff".encode()


def _line_end(buffer: bytes | bytearray, start: int) -> tuple[int, int]:
    """Where the next line ends at or after ``start``, and where the next line begins; (-1, -1)
    if no line end is there. Two ``find`` calls, not a regex: a partial image's data line is
    megabytes long, and a regex steps through it byte by byte (100x slower here)."""
    lf = buffer.find(b"\n", start)
    cr = buffer.find(b"\r", start, lf if lf >= 0 else len(buffer))
    if cr >= 0:
        return cr, cr + 2 if buffer[cr + 1:cr + 2] == b"\n" else cr + 1
    return (lf, lf + 1) if lf >= 0 else (-1, -1)


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str
    data: bytes
    id: str | None = None
    # With a decoder's ``lift``: the values it took out of ``data``, by the marker left there.
    lifted: dict[str, bytes] | None = field(default=None, compare=False, repr=False)
    # With a decoder's ``passing``: the marker left in ``data`` where the image's base64 was,
    # its bytes handed on already (:meth:`SSEDecoder.feed_passing`).
    passed: str | None = field(default=None, compare=False, repr=False)


# What a decoder may do with a long data line instead of joining it: ``(data, lifted values)``
# for the text ``pieces[0][start:] + pieces[1:-1] + pieces[-1][:end]``, or None to have it
# joined (``proxy.upstream.lifted.lift_pieces``).
LongDataLift = Callable[[Sequence[bytes], int, int], "tuple[bytes, dict[str, bytes]] | None"]


# A line still unfinished when this much of it has come is held as the chunks it came in,
# not grown in the buffer: a 1.5 MB data line arrives in dozens of chunks.
HOLD_FROM = 64 * 1024
# Which events' image may be handed on before the event has ended (given the event's name).
PassesImage = Callable[[str], bool]
_B64_KEY = b'"b64_json"'
_JSON_SPACE = b" \t"


class BrokenImage(ValueError):
    """An image handed on in pieces turned out not to be plain base64 ending in its string's
    closing quote: what was handed on cannot be completed."""


class SSEDecoder:
    """Feed it chunks as they arrive; it yields each complete event (WHATWG rules).

    Short lines are collected in one buffer. A long unfinished line (``hold_from`` bytes or
    more: a data line carrying an image) is held as the chunks it arrives in, and its value is
    copied out once, when its end comes: growing a buffer chunk by chunk, then copying the
    value out of it, cost two to three copies of every image. With ``lift``, a long data line
    is handed to it as those chunks first: what it returns is the line's data, and the values
    it took out are the message's ``lifted``.

    With ``passing`` (:meth:`feed_passing`), the image of a long data line of an event it
    accepts (by its name, from the ``event:`` line before the data) is handed on as it arrives:
    its ``b64_json`` string's bytes, verbatim base64, come out of ``feed_passing`` chunk by chunk
    (bounded memory, no wait for the event's end), and the event, once it ends, has a marker
    in their place (``passed``)."""

    def __init__(self, hold_from: int = HOLD_FROM, lift: LongDataLift | None = None,
                 passing: PassesImage | None = None) -> None:
        self._hold_from = hold_from
        self._lift = lift
        self._passing = passing
        self._passed_head: bytes | None = None  # the line's JSON before the image passing on
        self._passed: str | None = None  # the marker of the image passed in this event
        self._lifted: dict[str, bytes] = {}
        self._held: list[bytes] = []  # the long line's pieces so far
        self._buffer = bytearray()
        self._resume = 0  # where the line-end search resumes: earlier bytes have none
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._at_start = True
        self._event = ""
        self._data: list[bytes] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Add bytes; returns the events they complete (possibly none)."""
        out: list[SSEMessage | bytes] = []
        self._feed(chunk, out)
        return out  # type: ignore[return-value]  # nothing is passed without ``passing``

    def feed_passing(self, chunk: bytes) -> list[SSEMessage | bytes]:
        """:meth:`feed`, with the pieces of an image being passed on, in order among the events
        (bytes: the next of its base64). Raises :class:`BrokenImage` when an image being passed
        on is not plain base64 after all."""
        out: list[SSEMessage | bytes] = []
        self._feed(chunk, out)
        return out

    def _feed(self, chunk: bytes, messages: list[SSEMessage | bytes]) -> None:
        if self._passed_head is not None:
            rest = self._passing_on(chunk, messages)
            if rest is None:
                return
            chunk = rest
        if self._at_start and chunk:
            # WHATWG: one leading byte order mark is ignored (it may arrive split).
            pending = bytes(self._buffer) + chunk
            if len(pending) < 3 and _BOM.startswith(pending):
                self._buffer = bytearray(pending)
                return
            self._at_start = False
            self._buffer = bytearray()
            chunk = pending[3:] if pending.startswith(_BOM) else pending
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._held:
            rest = self._held_line(chunk, messages)
            if rest is None:
                return
            chunk = rest
        buffer: bytes | bytearray
        if self._buffer:
            buffer = self._buffer
            buffer += chunk
        else:
            # Nothing held from before (the usual case): the lines are read from the chunk
            # itself, and only what is left of it at the end is kept. Copying every chunk into
            # the buffer first cost a tenth of a stream's instructions in the gateway
            # (callgrind, scripts/inproc.py --kind stream: 0.76 M of 13.4 M per job).
            buffer = chunk if isinstance(chunk, bytes) else bytes(chunk)
        start = 0
        search = self._resume
        view = memoryview(buffer)  # lines are copied out once, not sliced then copied
        try:
            while True:
                end, after = _line_end(buffer, search)
                if end < 0:
                    search = len(buffer)
                    break
                message = self._line(buffer, view, start, end)
                start = search = after
                if message is not None:
                    messages.append(message)
        finally:
            view.release()
        if buffer.endswith(b"\r") and start == len(buffer):
            self._skip_lf = True
        if start == len(buffer):
            # All consumed: a fresh buffer, so a stream does not keep the capacity of its
            # largest event (a partial image's megabyte) for the rest of its life.
            self._buffer = bytearray()
        elif len(buffer) - start >= self._hold_from:
            self._buffer = bytearray()
            search = start
            # A long line begun: its image passed on from here, or the line held from here on;
            # either way what the line has so far is copied out of the buffer once.
            if not self._pass_on(buffer, start, messages):
                self._held = [bytes(memoryview(buffer)[start:])]
        elif isinstance(buffer, bytearray):
            del buffer[:start]
        else:
            self._buffer = bytearray(memoryview(buffer)[start:])  # the unfinished line
        self._resume = search - start

    def _pass_on(self, buffer: bytes | bytearray, start: int,
                 out: list[SSEMessage | bytes]) -> bool:
        """A long line begun (``buffer`` from ``start``): if it is the data of an event whose
        image is passed on, and its ``b64_json`` string begins in it and runs past it, hand on
        what came of that string and pass the rest on as it comes (True)."""
        if (self._passing is None or self._passed is not None or self._data
                or buffer[start:start + 5] != b"data:" or not self._passing(self._event)):
            return False
        found = buffer.find(_B64_KEY, start)
        if found < 0:
            return False
        end = len(buffer)
        at = found + len(_B64_KEY)
        while buffer[at:at + 1] in _JSON_SPACE and at < end:
            at += 1
        if buffer[at:at + 1] != b":":
            return False
        at += 1
        while buffer[at:at + 1] in _JSON_SPACE and at < end:
            at += 1
        if buffer[at:at + 1] != b'"' or buffer.find(b'"', at + 1) >= 0:
            return False
        self._passed_head = bytes(buffer[start:at + 1])
        self._passed = f"\x00passed:{nonce()}"
        if at + 1 < end:
            out.append(_plain(bytes(memoryview(buffer)[at + 1:])))
        return True

    def _passing_on(self, chunk: bytes, out: list[SSEMessage | bytes]) -> bytes | None:
        """``chunk`` while an image is passed on: its bytes up to the string's closing quote are
        handed on; what follows the quote (the rest of the line, and more) is returned, the
        line held from there as a long line, the marker in place of the image."""
        quote = chunk.find(b'"')
        piece = chunk if quote < 0 else chunk[:quote]
        if piece:
            out.append(_plain(piece))
        if quote < 0:
            return None
        head, self._passed_head = self._passed_head, None
        assert head is not None and self._passed is not None
        self._held = [head + orjson.dumps(self._passed)[1:-1]]
        return chunk[quote:]

    def _held_line(self, chunk: bytes,
                   messages: list[SSEMessage | bytes]) -> bytes | memoryview | None:
        """``chunk`` after a long line's beginning: held too if the line does not end in it;
        else the line is read (its message, if it completes one, added to ``messages``) and
        what follows it in the chunk is returned."""
        end, after = _line_end(chunk, 0)
        if end < 0:
            self._held.append(bytes(chunk))
            return None
        pieces, self._held = self._held, []
        pieces.append(bytes(chunk))
        message = self._long_line(pieces, end)
        if message is not None:
            messages.append(message)
        if after == len(chunk) and chunk.endswith(b"\r"):
            self._skip_lf = True
        return memoryview(chunk)[after:]

    def _long_line(self, pieces: list[bytes], end: int) -> SSEMessage | None:
        """A long line: ``pieces`` joined, the last one cut at ``end`` (the first piece is
        ``hold_from`` bytes or more). A data line's value is copied out of them once, or
        lifted; any other line is joined and read as usual."""
        first = pieces[0]
        views: list[bytes | memoryview] = [*pieces[:-1], memoryview(pieces[-1])[:end]]
        if first[:5] == b"data:" and len(first) > 5:  # (the space after it is in this piece)
            start = 6 if first[5:6] == b" " else 5
            lifted = (None if self._lift is None or self._passed is not None
                      else self._lift(pieces, start, end))
            if lifted is not None:
                data, values = lifted
                self._data.append(data)
                self._lifted.update(values)
                return None
            views[0] = memoryview(first)[start:]
            self._data.append(b"".join(views))
            return None
        line = b"".join(views)
        with memoryview(line) as view:
            return self._line(line, view, 0, len(line))

    def _line(self, buffer: bytes | bytearray, view: memoryview, start: int,
              end: int) -> SSEMessage | None:
        """One line, ``buffer[start:end]``. Only a field's value is copied out of the buffer
        (once): a data line is a megabyte of base64, and every copy of it costs."""
        if start == end:
            if not self._data:
                # WHATWG: an event without data is not dispatched (its name is forgotten):
                # an upstream "event: ping" keep-alive must not reach the JSON parser.
                self._event = ""
                return None
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            message = SSEMessage(self._event or "message", data, self._id,
                                 self._lifted or None, self._passed)
            self._event, self._data, self._lifted, self._passed = "", [], {}, None
            return message
        if buffer[start] == 0x3A:  # ":" a comment
            return None
        colon = buffer.find(b":", start, end)
        if colon < 0:
            name, value_start = view[start:end], end
        else:
            name, value_start = view[start:colon], colon + 1
            if value_start < end and buffer[value_start] == 0x20:
                value_start += 1
        if name == b"data":
            self._data.append(bytes(view[value_start:end]))
        elif name == b"event":
            self._event = bytes(view[value_start:end]).decode("utf-8", "replace")
        elif name == b"id":
            value = bytes(view[value_start:end])
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        return None


def _plain(piece: bytes) -> bytes:
    """``piece`` of an image's string if it is plain base64 text: ASCII, nothing escaped, no
    line end (checked with C scans, not byte by byte)."""
    if not piece.isascii() or b"\\" in piece or b"\n" in piece or b"\r" in piece:
        raise BrokenImage("an image that is not plain base64")
    return piece


def encode_event(event: str, payload: dict, head: bytes = b"") -> bytes:
    """One SSE frame: ``head`` (e.g. an ``id:`` line), ``event:`` line, one ``data:`` line of
    compact JSON, blank line.

    orjson never emits raw newlines inside its output, so the data stays on one line.
    """
    return b"".join((head, b"event: ", event.encode(), b"\ndata: ", orjson.dumps(payload),
                     b"\n\n"))


def image_event_pieces(event: str, payload: dict, b64: str | bytes,
                       head: bytes = b"") -> tuple[bytes, ...]:
    """:func:`encode_event` for a payload whose ``b64_json`` is ``b64``, in pieces to be written
    one after the other: bytes (pure base64, nothing to escape) are the middle piece as they
    are, never turned into a string nor copied into the frame; a string is encoded with the
    rest, in one piece."""
    if isinstance(b64, str):
        return (encode_event(event, {**payload, "b64_json": b64}, head),)
    frame = encode_event(event, {**payload, "b64_json": ""}, head)
    at = frame.index(b'"b64_json":""') + len(b'"b64_json":"')
    return frame[:at], b64, frame[at:]


def encode_image_event(event: str, payload: dict, b64: str | bytes, head: bytes = b"") -> bytes:
    """:func:`image_event_pieces` as one frame (made in one copy of the image)."""
    pieces = image_event_pieces(event, payload, b64, head)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def encode_comment(text: str) -> bytes:
    """A comment line: keeps proxies from timing out, ignored by every SSE parser."""
    return b": " + text.encode() + b"\n\n"
