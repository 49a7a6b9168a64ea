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


def _restored(message: SSEMessage) -> dict:
    data = orjson.loads(message.data)
    for marker, value in (message.lifted or {}).items():
        assert data["b64_json"] == marker
        data["b64_json"] = value.decode()
    return data


def _passing_decoder() -> SSEDecoder:
    return SSEDecoder(lift=lift_pieces, passing=lambda name: name.endswith(".completed"))


def _image_stream(image: bytes, ending: bytes) -> bytes:
    events = [(kind, orjson.dumps({"type": f"image_generation.{kind}",
                                   "b64_json": image.decode(), "size": "1024x1024"}))
              for kind in ("partial_image", "completed")]
    data = b"".join(b"event: image_generation." + kind.encode() + b"\ndata: " + event + b"\n\n"
                    for kind, event in events)
    return data.replace(b"\n", ending) + STREAM.replace(b"\n", ending)


@pytest.mark.parametrize("chunk", [4096, 65_536, 262_144])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_a_final_image_is_passed_on_as_it_arrives(chunk: int, ending: bytes) -> None:
    """With ``passing``, the image of an accepted event's long data line comes out in pieces,
    in order among the messages (after those before it, before its own), and its event comes
    with a marker in its place; every other message is the one the plain decoder gives."""
    image = base64.b64encode(os.urandom(300_000))
    data = _image_stream(image, ending)
    plain, passer = SSEDecoder(lift=lift_pieces), _passing_decoder()
    expected = [m for at in range(0, len(data), chunk) for m in plain.feed(data[at:at + chunk])]
    outputs = [out for at in range(0, len(data), chunk)
               for out in passer.feed_passing(data[at:at + chunk])]
    messages = [out for out in outputs if isinstance(out, SSEMessage)]
    pieces = [number for number, out in enumerate(outputs) if isinstance(out, bytes)]
    assert b"".join(outputs[number] for number in pieces) == image  # type: ignore[misc]
    assert len(pieces) > 1  # as it came: more than one piece
    assert outputs.index(messages[0]) < pieces[0] and pieces[-1] < outputs.index(messages[1])
    assert messages[0].passed is None and _restored(messages[0]) == _restored(expected[0])
    completed, want = orjson.loads(messages[1].data), _restored(expected[1])
    assert messages[1].passed is not None and completed.pop("b64_json") == messages[1].passed
    assert want.pop("b64_json") == image.decode() and completed == want
    assert messages[2:] == expected[2:] == EXPECTED


def test_an_image_event_that_arrives_whole_or_short_is_not_passed() -> None:
    image = base64.b64encode(os.urandom(300_000))
    data = _image_stream(image, b"\n")
    whole = _passing_decoder().feed_passing(data)  # one chunk holds every line: none held
    assert all(isinstance(out, SSEMessage) and out.passed is None for out in whole)
    short = _image_stream(base64.b64encode(os.urandom(3_000)), b"\n")
    decoder = _passing_decoder()
    outputs = [out for at in range(0, len(short), 512) for out in decoder.feed_passing(
        short[at:at + 512])]
    assert all(isinstance(out, SSEMessage) and out.passed is None for out in outputs)


def test_an_image_that_turns_out_not_plain_base64_is_broken() -> None:
    from proxy.upstream.sse import BrokenImage

    data = _image_stream(base64.b64encode(os.urandom(300_000)), b"\n")
    cut = data.index(b"event: image_generation.completed") + 100_000
    decoder = _passing_decoder()
    assert any(isinstance(out, bytes) for out in decoder.feed_passing(data[:cut]))
    with pytest.raises(BrokenImage):
        decoder.feed_passing(b"AAAA\\/AAAA" + data[cut:])
