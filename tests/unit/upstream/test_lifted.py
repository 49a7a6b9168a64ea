"""Lifting large base64 images out of an upstream's JSON, and splicing them back in: what comes
out is what ``orjson`` would have made of the same answer, value for value."""

from __future__ import annotations

import base64
import itertools
import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.events import b64_text
from proxy.http.responses import _spliced
from proxy.upstream.lifted import LIFT_MIN, lift_images, lift_pieces, lift_raw
from proxy.upstream.sse import encode_image_event

BIG = base64.b64encode(os.urandom(LIFT_MIN)).decode()


def _restored(skeleton: object, lifted: dict[str, bytes]) -> object:
    """The skeleton with every marker replaced by its lifted value (as a string)."""
    if isinstance(skeleton, dict):
        return {k: _restored(v, lifted) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [_restored(v, lifted) for v in skeleton]
    if isinstance(skeleton, str) and skeleton in lifted:
        return b64_text(lifted[skeleton])
    return skeleton


@pytest.mark.parametrize("raw", [
    orjson.dumps({"data": [{"b64_json": BIG}, {"b64_json": BIG + "=="}]}),
    b'{"data" : [ { "b64_json"  :\n "' + BIG.encode() + b'" } ] , "x": "\\"b64_json\\": 1"}',
    orjson.dumps({"data": [{"b64_json": BIG[:100]}], "b64_json": BIG}),  # small, and top level
    orjson.dumps({"data": [{"b64_json": BIG[:-8] + "\\u0041" * 2}]}),  # escapes: not lifted
    orjson.dumps({"data": [{"b64_json": BIG + "!"}]}),  # ASCII: lifted as it is
    orjson.dumps({"data": [{"b64_json": BIG + "\u00e9"}]}),  # not ASCII: parsed
    orjson.dumps({"data": [{"b64_json": 5}, {"b64_json": None}], "n": BIG}),
])
def test_lifting_changes_nothing_but_where_the_bytes_are(raw: bytes) -> None:
    skeleton, lifted = lift_images(raw)
    assert _restored(skeleton, lifted) == orjson.loads(raw)
    assert all(len(v) >= LIFT_MIN for v in lifted.values())


def test_not_json_is_refused_like_orjson() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        lift_images(b'{"b64_json": "' + BIG.encode() + b'"')


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(0, 3)), min_size=1, max_size=5),
       st.text(max_size=30))
def test_spliced_answer_is_the_json_of_the_same_body(kinds, text) -> None:
    """Any mix of lifted (bytes), string and missing images, with other fields around them."""
    images = {0: BIG.encode(), 1: BIG[:64].encode(), 2: "small", 3: None}
    data = []
    for kind in kinds:
        item = {"revised_prompt": text}
        if kind is True:
            item["url"] = text
        elif isinstance(kind, int) and images[kind] is not None:
            item["b64_json"] = images[kind]
        data.append(item)
    body = {"created": 1, "data": data, "text": text}
    expected = {**body, "data": [{k: b64_text(v) if k == "b64_json" else v
                                  for k, v in item.items()} for item in data]}
    assert orjson.loads(b"".join(_spliced(body))) == expected


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "size", "quality", "partial_image_index"]),
                       st.one_of(st.text(max_size=20), st.integers(0, 2**31))))
def test_an_image_event_with_bytes_is_the_event_with_the_string(payload) -> None:
    assert encode_image_event("e", payload, BIG.encode()) == encode_image_event("e", payload, BIG)


# -- a long SSE data line, lifted from the chunks it arrived in ---------------------------------


def _pieces(text: bytes, cuts: list[float], head: bytes, after: bytes) -> tuple[list[bytes], int]:
    """``head + text + after`` cut at ``cuts`` (fractions of ``text``) into at least two pieces,
    the way the decoder holds a long line: the text starts at ``len(head)`` in the first piece
    and ends at the returned offset in the last."""
    whole = head + text + after
    points = sorted({len(head) + max(1, min(len(text) - 1, round(cut * len(text))))
                     for cut in cuts})
    bounds = [0, *points, len(whole)]
    pieces = [whole[a:b] for a, b in itertools.pairwise(bounds)]
    return pieces, len(pieces[-1]) - len(after)


image_events = st.builds(
    lambda kind, fields, images: orjson.dumps({"type": kind, **fields, **images}),
    st.sampled_from(["image_generation.partial_image", "image_generation.completed"]),
    st.dictionaries(st.sampled_from(["size", "quality", "revised_prompt"]),
                    st.text(max_size=30), max_size=3),
    st.fixed_dictionaries({"b64_json": st.sampled_from(
        [BIG, BIG + "==", BIG[:100], BIG[:-8] + "\\u0041", BIG + "\u00e9"])}))


@settings(max_examples=150, deadline=None)
@given(text=image_events, cuts=st.lists(st.floats(0, 1), min_size=1, max_size=6),
       head=st.sampled_from([b"data: ", b"data:"]), after=st.sampled_from([b"", b"\r\n"]))
def test_lifting_from_pieces_is_lifting_the_joined_line(text, cuts, head, after) -> None:
    """Whatever the cuts, the skeleton and its values are the event, value for value; and an
    image whose key and opening quote are in the first piece is lifted without a join."""
    pieces, end = _pieces(text, cuts, head, after)
    got = lift_pieces(pieces, len(head), end)
    if got is None:
        skeleton, lifted = lift_raw(text)  # what the decoder does then: join, lift
    else:
        skeleton, lifted = got
    assert _restored(orjson.loads(skeleton), lifted) == orjson.loads(text)
    assert all(len(value) >= LIFT_MIN and isinstance(value, bytes) for value in lifted.values())
    image = orjson.loads(text)["b64_json"]
    opening = text.index(b'"b64_json":"') + len(b'"b64_json":"')
    liftable = len(image) >= LIFT_MIN and image.isascii() and "\\" not in image
    runs_past = len(head) + opening < len(pieces[0]) < len(head) + opening + len(image)
    if liftable and runs_past:
        assert got is not None and list(lifted.values()) == [image.encode()]


def test_a_value_that_does_not_end_in_the_line_is_left_to_the_parser() -> None:
    text = b'{"b64_json":"' + BIG.encode()
    assert lift_pieces([b"data: " + text[:100], text[100:]], 6, len(text) - 100) is None
