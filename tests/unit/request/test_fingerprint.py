"""The fingerprint that makes two requests "the same request" under one job id."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from proxy.images.inputs import InputImage, load_image
from proxy.request.bind import ParsedRequest
from proxy.request.fingerprint import fingerprint
from proxy.request.parse import parse_params


def png(colour: tuple[int, int, int]) -> InputImage:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return load_image(buffer.getvalue(), param="image")


def parsed(body: dict, *, response_format: str | None = None, images: list | None = None,
           mask: InputImage | None = None, from_form: bool = False) -> ParsedRequest:
    known, unknown = parse_params(body, from_form=from_form)
    return ParsedRequest(known, unknown, response_format, bool(images), images or [], mask)


BODY = {"model": "m", "prompt": "a red apple", "size": "64x64", "n": 2,
        "metadata": {"order": 7, "tags": ["a", "b"]}}


def test_the_same_request_sent_differently_has_the_same_fingerprint() -> None:
    first = fingerprint("alice", parsed(BODY))
    # Another order of the fields, another spelling of one, explicit nulls: the same request.
    reordered = {"metadata": {"tags": ["a", "b"], "order": 7}, "n": 2, "size": "64x64",
                 "prompt": "a red apple", "model": "m", "user": None}
    assert fingerprint("alice", parsed(reordered)) == first
    aliased = {**BODY, "aspectRatio": "1:1"}
    assert fingerprint("alice", parsed(aliased)) == fingerprint(
        "alice", parsed({**BODY, "aspect_ratio": "1:1"}))
    # A multipart form says the same in text.
    form = {"model": "m", "prompt": "a red apple", "size": "64x64", "n": "2"}
    assert fingerprint("alice", parsed(form, from_form=True)) == fingerprint(
        "alice", parsed({k: v for k, v in BODY.items() if k != "metadata"}))


@pytest.mark.parametrize("change", [
    {"prompt": "a green apple"}, {"n": 1}, {"size": "128x128"}, {"stream": True},
    {"metadata": {"order": 8, "tags": ["a", "b"]}}, {"unknown_thing": 1}, {"model": "other"},
])
def test_any_other_field_value_is_another_request(change: dict) -> None:
    assert fingerprint("alice", parsed({**BODY, **change})) != fingerprint("alice", parsed(BODY))


def test_the_key_the_answer_format_and_async_are_part_of_it() -> None:
    base = fingerprint("alice", parsed(BODY))
    assert fingerprint("bob", parsed(BODY)) != base, "another key never shares a job"
    assert fingerprint("alice", parsed(BODY, response_format="url")) != base
    assert fingerprint("alice", parsed(BODY), detached=True) != base


def test_input_images_are_compared_by_content() -> None:
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    with_red = fingerprint("alice", parsed(BODY, images=[red]))
    assert fingerprint("alice", parsed(BODY, images=[png((255, 0, 0))])) == with_red
    assert fingerprint("alice", parsed(BODY, images=[blue])) != with_red
    assert fingerprint("alice", parsed(BODY, images=[red, blue])) != fingerprint(
        "alice", parsed(BODY, images=[blue, red]))
    assert fingerprint("alice", parsed(BODY, images=[red], mask=blue)) != with_red
