"""Server-Sent Events at the byte level, both directions.

Upstream events are split on blank lines without decoding: httpx's ``aiter_lines`` (and anything
built on ``str.splitlines``) also breaks on U+2028 and friends, which is not SSE. Nothing here caps
a line or an event; one image event can exceed 16 MiB. Our own events are written as pre-built
bytes because generic encoders regex-split multi-megabyte data.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_BOM = "\ufeff".encode()


def _line_end(buffer: bytearray, start: int) -> tuple[int, int]:
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


class SSEDecoder:
    """Feed it chunks as they arrive; it yields each complete event (WHATWG rules)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._resume = 0  # where the line-end search resumes: earlier bytes have none
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._at_start = True
        self._event = ""
        self._data: list[bytes] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Add bytes; returns the events they complete (possibly none)."""
        if self._at_start and chunk:
            # WHATWG: one leading byte order mark is ignored (it may arrive split).
            pending = bytes(self._buffer) + chunk
            if len(pending) < 3 and _BOM.startswith(pending):
                self._buffer = bytearray(pending)
                return []
            self._at_start = False
            self._buffer = bytearray()
            chunk = pending[3:] if pending.startswith(_BOM) else pending
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer
        buffer += chunk
        messages: list[SSEMessage] = []
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
        else:
            del buffer[:start]
        self._resume = search - start
        return messages

    def _line(self, buffer: bytearray, view: memoryview, start: int,
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
            message = SSEMessage(self._event or "message", data, self._id)
            self._event, self._data = "", []
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
