"""The byte-level SSE decoder: any chunking, any line ending, no size cap, no Unicode splitting."""

from __future__ import annotations

import base64
import os

import orjson
import pytest

from proxy.upstream.lifted import lift_pieces
from proxy.upstream.sse import SSEDecoder, SSEMessage, encode_comment, encode_event

STREAM = (
    b": keep-alive\n\n"
    b"event: image_generation.partial_image\n"
    b'data: {"a":"x\xe2\x80\xa8y"}\n\n'  # a raw U+2028 inside the JSON must not split the line
    b"id: 7\n"
    b"data: first\n"
    b"data: second\n\n"
)
EXPECTED = [
    SSEMessage("image_generation.partial_image", b'{"a":"x\xe2\x80\xa8y"}', None),
    SSEMessage("message", b"first\nsecond", "7"),
]


def decode_all(data: bytes, chunk: int) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out: list[SSEMessage] = []
    for start in range(0, len(data), chunk):
        out += decoder.feed(data[start:start + chunk])
    return out


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 10_000])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_any_chunking_and_line_ending(chunk: int, ending: bytes) -> None:
    data = STREAM.replace(b"\n", ending)
    assert decode_all(data, chunk) == EXPECTED


def test_event_larger_than_16_mib_is_passed_whole() -> None:
    payload = b"A" * (20 * 1024 * 1024)
    data = b"event: big\ndata: " + payload + b"\n\n"
    messages = decode_all(data, 65536)
    assert len(messages) == 1
    assert messages[0].data == payload


def test_unterminated_event_is_not_emitted() -> None:
    assert decode_all(b"data: half", 4) == []


def test_encoders_round_trip() -> None:
    frame = encode_comment("keep-alive") + encode_event("x.y", {"k": "v\u2028w", "n": 1})
    assert decode_all(frame, 5) == [SSEMessage("x.y", '{"k":"v\u2028w","n":1}'.encode(), None)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 64])
def test_bom_split_across_chunks_and_named_events_without_data(chunk: int) -> None:
    data = "\ufeff".encode() + b"event: ping\n\nevent: x\ndata: y\n\n"
    assert decode_all(data, chunk) == [SSEMessage("x", b"y", None)]


@pytest.mark.parametrize("chunk", [4096, 65_536, 262_144, 10_000_000])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_image_events_lifted_from_their_chunks_are_the_same_events(chunk: int,
                                                                   ending: bytes) -> None:
    """With ``lift``, a long data line's image comes out of the chunks it arrived in (the
    message's ``lifted``, a marker in its data); with the values put back, every message is the
    one the plain decoder gives, and nothing else changes."""
    image = base64.b64encode(os.urandom(300_000))
    events = [orjson.dumps({"type": f"image_generation.{kind}", "b64_json": image.decode(),
                            "size": "1024x1024"}) for kind in ("partial_image", "completed")]
    data = b"".join(b"event: e\ndata: " + event + b"\n\n" for event in events)
    data = data.replace(b"\n", ending) + STREAM.replace(b"\n", ending)
    plain: list[SSEMessage] = []
    lifting: list[SSEMessage] = []
    decoder, lifter = SSEDecoder(), SSEDecoder(lift=lift_pieces)
    for start in range(0, len(data), chunk):
        plain += decoder.feed(data[start:start + chunk])
        lifting += lifter.feed(data[start:start + chunk])
    assert [m.lifted for m in plain] == [None] * 4
    assert [(m.event, m.id) for m in lifting] == [(m.event, m.id) for m in plain]
    for got, want in zip(lifting[:2], plain[:2], strict=True):
        restored = orjson.loads(got.data)
        for marker, value in (got.lifted or {}).items():
            assert restored["b64_json"] == marker
            restored["b64_json"] = value.decode()
        assert restored == orjson.loads(want.data)
        # Held in chunks (from 64 KiB on), the image was lifted; one chunk holding the whole
        # line is decoded as a short line, and lifted by the adapter later.
        assert (got.lifted is not None) == (chunk < len(data))
    assert lifting[2:] == plain[2:] == EXPECTED
