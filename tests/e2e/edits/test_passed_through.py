"""A large non-streamed edit is written to the client while the upstream still sends it, as a
generation is (tests/e2e/generations/test_passed_through.py): the multipart request goes up, the
JSON answer comes back in pieces, equal to what the upstream sent; a client that leaves midway
ends the upstream's answer."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.fakes.slow_body import IMAGES, SlowBody
from tests.support.images import encoded
from tests.support.keys import ALICE, client, keys_config
from tests.support.stack import Stack, stack_fixture

MODEL = "openai/gpt-image-1"


stack = stack_fixture(SlowBody, lambda url: keys_config(f"{url}/v1"))


def _post(stack: Stack[SlowBody]) -> Any:
    return httpx.Client(timeout=60).stream(
        "POST", f"{stack.gateway.url}/v1/images/edits",
        headers={"authorization": f"Bearer {ALICE}"},
        data={"model": MODEL, "prompt": "p", "n": "2"},
        files={"image": ("in.png", encoded(64, 64), "image/png")})


def test_the_client_reads_the_edit_while_the_upstream_still_sends_it(stack) -> None:
    with _post(stack) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        body = stack.fake.read_meanwhile(response)
    assert [item["b64_json"] for item in body["data"]] == [IMAGES[0], IMAGES[1]]
    assert [item["revised_prompt"] for item in body["data"]] == ["picture 0", "picture 1"]
    assert body["usage"]["output_tokens"] == 272
    (recorded,) = stack.fake.requests
    assert recorded.body["prompt"] == "p" and [name for name, *_ in recorded.files] == ["image"]


def test_the_sdk_reads_the_edit_as_a_buffered_answer(stack) -> None:
    stack.fake.go_on.set()
    result = client(stack.gateway, ALICE).images.with_raw_response.edit(
        model=MODEL, prompt="p", n=2, image=("in.png", encoded(64, 64), "image/png"))
    assert "content-length" not in result.headers  # it was passed through, not buffered
    assert [d.b64_json for d in result.parse().data] == IMAGES


def test_a_client_that_leaves_the_edit_midway_ends_the_upstreams_answer(stack) -> None:
    with _post(stack) as response:
        next(response.iter_raw())
        assert stack.fake.halfway.is_set()
    assert stack.fake.abandoned.wait(30)
    assert not stack.fake.finished.is_set()
