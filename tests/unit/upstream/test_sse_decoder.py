"""The byte-level SSE decoder: any chunking, any line ending, no size cap, no Unicode splitting."""

from __future__ import annotations

import pytest

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
