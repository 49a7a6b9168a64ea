"""Scanning a large JSON answer as it arrives: wherever the chunks are cut, the pieces put back
together are the upstream's images, the items and the rest are what ``orjson`` makes of the
whole answer, and an answer that cannot be passed on is declined (before anything went out)
or refused (after)."""

from __future__ import annotations

import base64
import io
import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from proxy.upstream.pieces import ImageScanner, Item, NotPassable, Piece


def _png_b64(size: int) -> str:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(
        buffer, "PNG", compress_level=0)
    return base64.b64encode(buffer.getvalue()).decode()


IMAGES = [_png_b64(120), _png_b64(100)]  # ~57 KB and ~40 KB of base64
START = 32 * 1024


def _answer(**extra: object) -> dict[str, object]:
    return {"created": 5, "data": [{"revised_prompt": "a {[\"b64_json\"", "b64_json": IMAGES[0]},
                                   {"b64_json": IMAGES[1], "revised_prompt": "b"},
                                   {"url": "https://x/y.png"}],
            "usage": {"total_tokens": 3}, **extra}


def _scan(raw: bytes, cuts: list[int]) -> tuple[ImageScanner, list[object], dict]:
    scanner = ImageScanner(start=START)
    outputs: list[object] = []
    at = 0
    for cut in [*sorted(cuts), len(raw)]:
        outputs += scanner.feed(raw[at:cut])
        at = cut
    rest, body = scanner.finish()
    return scanner, outputs + rest, body


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_wherever_the_chunks_are_cut_the_answer_is_the_same(cuts: list[int],
                                                            spaced: bool) -> None:
    expected = _answer()
    raw = orjson.dumps(expected, option=orjson.OPT_INDENT_2 if spaced else None)
    scanner, outputs, body = _scan(raw, [cut % (len(raw) + 1) for cut in cuts])
    assert scanner.started and not scanner.declined
    images: dict[int, bytes] = {}
    items: list[Item] = []
    for output in outputs:
        if isinstance(output, Piece):
            assert not any(item.index >= output.index for item in items)  # in order
            images[output.index] = images.get(output.index, b"") + output.data
        else:
            assert isinstance(output, Item)
            items.append(output)
    assert images == {0: IMAGES[0].encode(), 1: IMAGES[1].encode()}
    assert [(i.index, i.fields, i.pieced) for i in items] == [
        (0, {"revised_prompt": "a {[\"b64_json\""}, True), (1, {"revised_prompt": "b"}, True),
        (2, {"url": "https://x/y.png"}, False)]
    assert body["usage"] == expected["usage"] and body["created"] == 5


def test_nothing_is_handed_on_before_the_first_bytes_of_images_reach_the_start() -> None:
    raw = orjson.dumps(_answer())
    scanner = ImageScanner(start=START)
    assert scanner.feed(raw[:START]) == [] and not scanner.started
    assert scanner.feed(raw[START:START + 1024]) and scanner.started
    assert scanner.raw == b""  # what was held is let go


@pytest.mark.parametrize("answer", [
    {"created": 1, "data": [{"b64_json": IMAGES[0].replace("/", "\\/")}]},  # escaped
    {"created": 1, "data": [{"b64_json": "é" + IMAGES[0]}]},  # not ASCII
    {"created": 1, "images": [{"b64_json": IMAGES[0]}]},  # not in 'data'
    {"error": {"message": "no"}},
    {"created": 1, "data": [{"b64_json": IMAGES[1][:1000]}]},  # ends before the start
], ids=["escaped", "non-ascii", "elsewhere", "error", "small"])
def test_an_answer_that_cannot_pass_is_declined_with_every_byte_kept(answer) -> None:
    raw = orjson.dumps(answer)
    scanner = ImageScanner(start=START)
    half = len(raw) // 2
    assert scanner.feed(raw[:half]) == []
    # Fed on after it declined (the rest of what was read at once), it keeps that too; its
    # caller reads what is left itself.
    assert scanner.feed(raw[half:]) == []
    assert scanner.finish() == ([], {})
    assert scanner.declined and scanner.raw == raw


@pytest.mark.parametrize("broken", [
    lambda raw: raw[:len(raw) * 3 // 4],  # ends inside the second image
    lambda raw: raw.replace(IMAGES[1][-60:].encode(), b""),  # the second image truncated
    lambda raw: raw.replace(IMAGES[1][:100].encode(), IMAGES[1][:99].encode() + b"\\/"),
    lambda raw: raw[:-1],  # not JSON at its end
], ids=["cut", "truncated", "escaped", "invalid"])
def test_an_answer_that_breaks_after_pieces_went_out_is_refused(broken) -> None:
    raw = broken(orjson.dumps(_answer()))
    scanner = ImageScanner(start=START)
    with pytest.raises(NotPassable):
        scanner.feed(raw[:START + 4096])
        assert scanner.started
        scanner.feed(raw[START + 4096:])
        scanner.finish()
