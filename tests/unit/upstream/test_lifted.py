"""Lifting large base64 images out of an upstream's JSON, and splicing them back in: what comes
out is what ``orjson`` would have made of the same answer, value for value."""

from __future__ import annotations

import base64
import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.events import b64_text
from proxy.http.responses import _spliced
from proxy.upstream.lifted import LIFT_MIN, lift_images
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
