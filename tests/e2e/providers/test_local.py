"""The embedded default: the local renderer through a real server and the official SDK."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

from tests.support.clients import async_sdk, sdk
from tests.support.images import decode, mean_difference
from tests.support.schemas import validate


def test_plain_post_returns_a_png_of_the_requested_size(local_gateway) -> None:
    # The README's curl example: no key, just JSON declared as JSON.
    response = httpx.post(f"{local_gateway.url}/v1/images/generations",
                          content=b'{"model":"local","prompt":"a red apple"}', timeout=60,
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    body = response.json()
    validate("ImagesResponse", body)
    image = decode(body["data"][0]["b64_json"])
    assert image.format == "PNG" and image.size == (1024, 1024)
    assert body["size"] == "1024x1024" and body["output_format"] == "png"
    assert body["quality"] == "medium" and body["background"] == "opaque"
    assert body["provider"] == "local"
    assert body["id"] == response.headers["x-request-id"]
    red, _, blue = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
    assert red > blue, "a red apple should be mostly red"


def test_sdk_generate_sizes_formats_and_n(local_gateway) -> None:
    client = sdk(local_gateway)
    result = client.images.generate(model="local", prompt="blue ocean waves", size="512x256",
                                    n=3, output_format="webp", quality="low")
    assert [decode(d.b64_json).size for d in result.data] == [(512, 256)] * 3
    assert {decode(d.b64_json).format for d in result.data} == {"WEBP"}
    assert len({d.b64_json for d in result.data}) == 3, "n images must differ"
    assert result.size == "512x256" and result.quality == "low" and result.output_format == "webp"
    assert result.usage is not None and result.usage.input_tokens > 0

    jpeg = client.images.generate(model="local", prompt="x", size="256x256",
                                  output_format="jpeg", output_compression=40)
    assert decode(jpeg.data[0].b64_json).format == "JPEG"


def test_same_prompt_and_seed_give_the_same_image(local_gateway) -> None:
    client = sdk(local_gateway)

    def draw(seed: int) -> str:
        return client.images.generate(model="local", prompt="a green tree", size="256x256",
                                      extra_body={"seed": seed}).data[0].b64_json

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_transparent_background_really_is_transparent(local_gateway) -> None:
    result = sdk(local_gateway).images.generate(model="local", prompt="a yellow sun",
                                                size="256x256", background="transparent")
    image = decode(result.data[0].b64_json)
    assert image.mode == "RGBA" and image.getextrema()[3][0] == 0
    assert result.background == "transparent"


def test_sdk_stream_partial_images_then_completed(local_gateway) -> None:
    stream = sdk(local_gateway).images.generate(model="local", prompt="mountains at sunset",
                                                size="256x256", stream=True, partial_images=2)
    events = list(stream)
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    final = decode(events[-1].b64_json)
    first, second = (decode(e.b64_json) for e in events[:2])
    # The partials refine toward the final image.
    assert mean_difference(first, final) > mean_difference(second, final) > 0
    assert events[-1].usage.input_tokens > 0 and events[-1].size == "256x256"


async def test_async_sdk_generate_and_stream(local_gateway) -> None:
    client = async_sdk(local_gateway)
    result = await client.images.generate(model="local", prompt="a purple planet",
                                          size="128x128")
    assert decode(result.data[0].b64_json).size == (128, 128)
    stream = await client.images.generate(model="local", prompt="a purple planet",
                                          size="128x128", stream=True, partial_images=3)
    kinds = [event.type async for event in stream]
    assert kinds == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]


def test_stream_wire_format_matches_openai_schema(local_gateway) -> None:
    with httpx.stream("POST", f"{local_gateway.url}/v1/images/generations", timeout=60,
                      headers={"accept": "application/json"},  # what the SDK sends
                      json={"model": "local", "prompt": "a cat", "size": "128x128",
                            "stream": True, "partial_images": 1}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    events = []
    for frame in frames:
        # Keep-alive comments are lines of their own, never followed by a blank line.
        lines = [line for line in frame.split("\n") if not line.startswith(":")]
        assert len(lines) == 3 and lines[0] == f"id: {len(events) + 1}"
        assert lines[1].startswith("event: ") and lines[2].startswith("data: ")
        payload = json.loads(lines[2][6:])
        assert payload["type"] == lines[1][7:]
        validate("ImageGenStreamEvent", payload)
        events.append(payload)
    assert [e["type"] for e in events] == ["image_generation.partial_image",
                                           "image_generation.completed"]
    validate("ImageGenPartialImageEvent", events[0])
    validate("ImageGenCompletedEvent", events[1])
    assert "[DONE]" not in raw


async def test_concurrent_jobs_do_not_block_the_event_loop(local_gateway) -> None:
    """While slow renders run, the server still answers other requests at once."""
    client = async_sdk(local_gateway)
    order: list[str] = []

    async def slow_render(i: int) -> None:
        await client.images.generate(model="local/slow", prompt=f"city {i}", size="256x256",
                                     quality="low")
        order.append("render")

    async def health() -> None:
        await asyncio.sleep(0.3)  # the renders are under way (each takes >= 1.5 s of steps)
        async with httpx.AsyncClient() as http:
            for _ in range(5):
                assert (await http.get(f"{local_gateway.url}/healthz")).status_code == 200
        order.append("health")

    await asyncio.gather(*(slow_render(i) for i in range(3)), health())
    assert order[0] == "health"


def test_bad_requests_to_local(local_gateway) -> None:
    client = sdk(local_gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="local", prompt="x", size="100x100")
    assert caught.value.param == "size" and caught.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="local", prompt="x", response_format="url", stream=True)
    assert caught.value.param == "response_format"
