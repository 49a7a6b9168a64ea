"""Property tests of the byte-level SSE decoder and encoder (``proxy.upstream.sse``).

Streams are generated as the WHATWG rules read them: events with data lines of any characters
(U+2028, NEL, NUL ...), names, ids, comments and unknown fields between them, every line ended by
``\\n``, ``\\r\\n`` or ``\\r`` at random, and the bytes cut into arbitrary chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.upstream.sse import SSEDecoder, SSEMessage, encode_comment, encode_event

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
ENDINGS = ("\n", "\r\n", "\r")
# A line's text: anything but CR and LF (U+2028, U+0085, NUL and friends included).
_text = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=24)
# Leading spaces are worth extra draws: the first one after the colon is not the value's.
line_text = st.one_of(_text, _text.map(lambda text: "  " + text))
# Field names the decoder must ignore (field names are case-sensitive).
unknown_field = st.sampled_from(["retry", "foo", "Data", "EVENT", "Id", "data-x", " data"])


@dataclass(frozen=True)
class Line:
    text: str
    ending: str


@st.composite
def field_line(draw: st.DrawFn, name: str, value: str) -> str:
    """``name: value``, ``name:value`` (when the value has no leading space) or bare ``name``
    (for an empty value): the ways a writer may spell one field."""
    spellings = [f"{name}: {value}"]
    if not value.startswith(" "):
        spellings.append(f"{name}:{value}")
    if not value:
        spellings.append(name)
    return draw(st.sampled_from(spellings))


@st.composite
def event_lines(draw: st.DrawFn) -> tuple[list[str], list[str], str | None, str | None]:
    """One event's lines (in any order, data lines keeping theirs), its data lines, its last
    ``event`` value and its last valid ``id`` value."""
    data = draw(st.lists(line_text, min_size=1, max_size=4))
    fields: list[tuple[str, str]] = [("data", value) for value in data]
    extras = draw(st.lists(st.one_of(
        st.tuples(st.just("event"), line_text),
        st.tuples(st.just("id"), line_text),
        st.tuples(st.just(":"), line_text),
        st.tuples(unknown_field, line_text),
    ), max_size=4))
    for extra in extras:  # interleave, keeping the data lines in order
        fields.insert(draw(st.integers(0, len(fields))), extra)
    lines, name, last_id = [], None, None
    for field, value in fields:
        if field == ":":
            lines.append(":" + value)
            continue
        lines.append(draw(field_line(field, value)))
        if field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
    return lines, data, name, last_id


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SSEMessage]]:
    """Encoded events with random line endings, and the messages they must decode to."""
    lines: list[str] = []
    expected: list[SSEMessage] = []
    last_id: str | None = None
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            lines.append(":" + draw(line_text))  # a keep-alive between events
            lines.append("")
        body, data, name, event_id = draw(event_lines())
        lines += body
        lines.append("")  # the blank line that dispatches it
        last_id = event_id if event_id is not None else last_id
        expected.append(SSEMessage(name or "message", "\n".join(data).encode(), last_id))
    out: list[Line] = []
    for text in lines:
        ending = draw(st.sampled_from(ENDINGS))
        if not text and ending == "\n" and out and out[-1].ending == "\r":
            ending = "\r\n"  # "\r" then "\n" is one line end, not an end and a blank line
        out.append(Line(text, ending))
    return "".join(line.text + line.ending for line in out).encode(), expected


# Where to cut a stream, as fractions of its length (so every cut lands inside it).
cut_points = st.lists(st.floats(0, 1), max_size=16)


def chunked(data: bytes, cuts: list[float]) -> list[bytes]:
    points = sorted({round(cut * len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# Long lines are held as their chunks from HOLD_FROM bytes (64 KiB) on: these tiny thresholds
# put every line of the generated streams through that path too.
HOLDING = (1, 2, 6, 7)


def decode(chunks: list[bytes]) -> list[SSEMessage]:
    """The messages, the same whether lines are held as their chunks or not."""
    decoders = [SSEDecoder(), *(SSEDecoder(hold_from) for hold_from in HOLDING)]
    results = [[message for chunk in chunks for message in decoder.feed(chunk)]
               for decoder in decoders]
    assert all(result == results[0] for result in results[1:])
    return results[0]


@SETTINGS
@given(stream=streams(), cuts=cut_points)
def test_any_events_any_line_endings_any_chunks_decode_exactly(stream, cuts) -> None:
    data, expected = stream
    assert decode(chunked(data, cuts)) == expected


@settings(SETTINGS, max_examples=40)
@given(stream=streams())
def test_byte_by_byte_is_the_same_as_all_at_once(stream) -> None:
    data, expected = stream
    assert decode([data[i:i + 1] for i in range(len(data))]) == expected == decode([data])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
event_names = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), min_size=1,
                      max_size=40)


@settings(SETTINGS, max_examples=80)
@given(events=st.lists(st.tuples(event_names, st.dictionaries(st.text(), json_values,
                                                                max_size=6)), max_size=4),
       comment=line_text, cuts=cut_points)
def test_encoded_events_round_trip_any_json(events, comment, cuts) -> None:
    data = b"".join(encode_comment(comment) + encode_event(name, payload)
                    for name, payload in events)
    messages = decode(chunked(data, cuts))
    assert [m.event for m in messages] == [name for name, _ in events]
    assert all(m.id is None for m in messages)
    for message, (_, payload) in zip(messages, events, strict=True):
        assert b"\n" not in message.data and b"\r" not in message.data
        assert message.data == orjson.dumps(payload)
        assert orjson.loads(message.data) == payload


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=512), cuts=cut_points)
def test_arbitrary_bytes_never_crash_and_chunking_never_matters(data, cuts) -> None:
    whole = decode([data])
    assert decode(chunked(data, cuts)) == whole
    assert all(isinstance(m, SSEMessage) and isinstance(m.data, bytes) for m in whole)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(parts=st.lists(st.sampled_from([b"data", b"event", b"id", b":", b" ", b"x", b"\r",
                                       b"\n", b"\r\n", b"\xe2\x80\xa8", b"\xff", b"\0"]),
                      max_size=60),
       cuts=cut_points)
def test_line_end_soup_never_crashes_and_chunking_never_matters(parts, cuts) -> None:
    data = b"".join(parts)  # dense in CR/LF pairs split across chunks, the tricky case
    assert decode(chunked(data, cuts)) == decode([data])


# -- two WHATWG rules the decoder once broke (found by the properties above) -------------


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decode([b"event: ping\n\ndata: {}\n\n"]) == [SSEMessage("message", b"{}", None)]


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert decode(["\ufeffevent: x\ndata: y\n\n".encode()]) == [SSEMessage("x", b"y", None)]


@st.composite
def image_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    """Events of the random streams above, with image events among them (a ``b64_json``
    string of base64 in a JSON data line, ``completed`` or not): the stream, and where each
    image's base64 lies in it."""
    data, _ = draw(streams())
    events: list[bytes] = [data]
    spans: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["image_generation.completed", "image_edit.completed",
                                     "image_generation.partial_image"]))
        image = draw(st.binary(min_size=0, max_size=200)).hex().encode()  # base64-safe text
        fields = orjson.dumps({"type": name, "b64_json": image.decode(), "size": "1x1"})
        ending = draw(st.sampled_from(ENDINGS)).encode()
        event = b"event: " + name.encode() + ending + b"data: " + fields + ending + ending
        at = sum(map(len, events)) + event.index(b'"b64_json":"') + len(b'"b64_json":"')
        spans.append((at, at + len(image)))
        events.append(event)
        if draw(st.booleans()):
            events.append(draw(streams())[0])
    return b"".join(events), spans


def _restore(message: SSEMessage, pieces: bytes) -> SSEMessage:
    if message.passed is None:
        return message
    marker = orjson.dumps(message.passed)[1:-1]
    return SSEMessage(message.event, message.data.replace(marker, pieces), message.id)


@SETTINGS
@given(stream=image_streams(), cuts=cut_points, inside=st.lists(st.floats(0, 1), max_size=6),
       hold_from=st.sampled_from([1, 4, 9, 30]))
def test_images_passed_on_in_pieces_come_out_whole_and_in_order(stream, cuts, inside,
                                                                 hold_from) -> None:
    """Whatever the chunks (cut anywhere, and inside the images too): a passing decoder's
    messages, each passed image put back from the pieces that came before it, are the plain
    decoder's; only ``completed`` images pass."""
    data, spans = stream
    points = [(start + fraction * (end - start)) / len(data)
              for (start, end), fraction in zip(spans * 2, inside, strict=False)]
    chunks = chunked(data, cuts + points)
    reference = SSEDecoder(hold_from)
    plain = [m for chunk in chunks for m in reference.feed(chunk)]
    decoder = SSEDecoder(hold_from, passing=lambda name: name.endswith(".completed"))
    got: list[SSEMessage] = []
    pieces = bytearray()
    for chunk in chunks:
        for out in decoder.feed_passing(chunk):
            if isinstance(out, bytes):
                pieces += out
                continue
            assert out.passed is None or out.event.endswith(".completed")
            got.append(_restore(out, bytes(pieces)))
            if out.passed is None:
                assert not pieces  # pieces only ever precede the event they belong to
            pieces = bytearray()
    assert not pieces
    assert got == plain
