"""Large images pass through unparsed: the base64 of a big upstream answer is lifted out as bytes
and spliced into the gateway's answer. Whatever path the image takes (JSON, an emulated stream,
an async job's kept result, a hosted URL), the client gets exactly the upstream's image, and a
broken one is still refused."""

from __future__ import annotations

import base64
import io
import random
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.clients import sdk
from tests.support.fakes import openai_upstream
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.stack import upstream_and_gateway


def noise_png(side: int = 320) -> str:
    """A PNG that does not compress: well past the 64 KiB the gateway lifts out."""
    rng = random.Random(side)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8)
                                                       for _ in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BIG = noise_png()


class BigImages(FakeOpenAI):
    """The fake OpenAI upstream, answering with large images (or a broken one)."""

    broken: bool = False

    def _images_response(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        answer = super()._images_response(body, n)
        for item in answer["data"]:
            item["b64_json"] = BIG[:-400] if self.broken else BIG
        return answer


def _yaml(url: str) -> str:
    return f"""models:
  - {{name: big, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
     api_key: {API_KEY}}}
  - {{name: old, provider: openai, upstream_model: dall-e-2, base_url: "{url}/v1",
     api_key: {API_KEY}}}
"""


@pytest.fixture(scope="module")
def stack():
    with upstream_and_gateway(BigImages(), _yaml) as stack:
        yield stack


def test_json_answer_carries_the_upstream_images_byte_for_byte(stack) -> None:
    stack.fake.broken = False
    assert len(BIG) > 64 * 1024
    result = sdk(stack.gateway).images.generate(model="big", prompt="p", n=2)
    assert [d.b64_json for d in result.data] == [BIG, BIG]
    assert result.usage is not None and result.cost is not None  # the rest is still there
    raw = httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=30,
                     json={"model": "big", "prompt": "p"})
    assert int(raw.headers["content-length"]) == len(raw.content)
    assert raw.json()["data"][0]["b64_json"] == BIG


def test_a_truncated_large_image_is_refused(stack) -> None:
    stack.fake.broken = True
    try:
        answer = httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=30,
                            json={"model": "big", "prompt": "p"})
    finally:
        stack.fake.broken = False
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_invalid_response"


def test_emulated_stream_hosted_url_and_async_result_carry_it_too(stack) -> None:
    stack.fake.broken = False
    events = list(sdk(stack.gateway).images.generate(model="old", prompt="p", stream=True))
    assert events[-1].type == "image_generation.completed" and events[-1].b64_json == BIG

    hosted = sdk(stack.gateway).images.generate(model="big", prompt="p", response_format="url")
    fetched = httpx.get(hosted.data[0].url, timeout=30)
    assert fetched.content == base64.b64decode(BIG)

    accepted = httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=30,
                          headers={"prefer": "respond-async"},
                          json={"model": "big", "prompt": "p"})
    assert accepted.status_code == 202
    for _ in range(250):
        job = httpx.get(f"{stack.gateway.url}/v1/images/jobs/{accepted.json()['id']}").json()
        if "result" in job:
            break
        time.sleep(0.02)
    assert job["result"]["data"][0]["b64_json"] == BIG


def test_a_relayed_stream_carries_large_partials_and_final_byte_for_byte(stack,
                                                                        monkeypatch) -> None:
    """A native stream whose partial and final images are large: each event's base64 is
    lifted from the upstream event and spliced into ours unchanged."""
    monkeypatch.setattr(openai_upstream, "png_b64", lambda *_: BIG)
    events = list(sdk(stack.gateway).images.generate(model="big", prompt="p", stream=True,
                                                     partial_images=2))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert all(e.b64_json == BIG for e in events)
    assert events[-1].usage is not None and events[0].partial_image_index == 0
