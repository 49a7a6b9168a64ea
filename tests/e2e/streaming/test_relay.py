"""Streamed generations relayed as Server-Sent Events, through the official SDK and raw HTTP:
partial images then the completed event, whatever the upstream's chunking and line endings,
nothing buffered, emulated for models that cannot stream, and failures before and after the
first byte (against the fake OpenAI upstream)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

from tests.support.clients import async_sdk, sdk
from tests.support.images import decode
from tests.support.schemas import validate


@pytest.mark.parametrize(("chunk_size", "line_end"), [(0, "\n"), (997, "\r\n"), (1, "\n")])
def test_stream_relays_partials_then_completed(openai_gateway, chunk_size, line_end) -> None:
    fake, server = openai_gateway
    fake.chunk_size, fake.line_end = chunk_size, line_end
    # The fake's images are flat colour: a few KB even at 1024x1024, so 1-byte chunks stay quick.
    stream = sdk(server).images.generate(model="openai/gpt-image-1", prompt="p", size="1024x1024",
                                         stream=True, partial_images=2)
    events = list(stream)
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert decode(events[-1].b64_json).getpixel((0, 0)) == (200, 0, 30)
    assert events[-1].usage.total_tokens == 284
    assert fake.requests[-1].body["stream"] is True
    assert fake.requests[-1].body["partial_images"] == 2


async def test_async_stream_events_arrive_as_they_are_sent(openai_gateway) -> None:
    """With a gap between upstream events, the first partial reaches the client before the
    upstream has sent the completed event: nothing is buffered."""
    fake, server = openai_gateway
    fake.event_gap = 1.0
    stream = await async_sdk(server).images.generate(
        model="openai/gpt-image-1", prompt="p", size="1024x1024", stream=True, partial_images=1)
    completed_already_sent = None
    async for event in stream:
        if event.type == "image_generation.partial_image":
            completed_already_sent = fake.completed_sent
    assert completed_already_sent is False
    assert fake.completed_sent


def test_stream_is_emulated_for_models_without_native_streaming(openai_gateway) -> None:
    fake, server = openai_gateway
    events = list(sdk(server).images.generate(model="openai/dall-e-3", prompt="p",
                                              stream=True, partial_images=2))
    assert [e.type for e in events] == ["image_generation.completed"]
    sent = fake.requests[-1].body
    assert "stream" not in sent and sent["response_format"] == "b64_json"


def test_stream_refused_upstream_is_a_plain_http_error(openai_gateway) -> None:
    """Before the first byte, a streamed request still fails with a status code."""
    _, server = openai_gateway
    with pytest.raises(openai.InternalServerError) as caught:
        list(sdk(server).images.generate(model="openai/bad-key", prompt="p", stream=True))
    assert caught.value.status_code == 502


@pytest.mark.parametrize("mode", ["drop_mid_stream", "stall_mid_stream"])
def test_failure_mid_stream_is_an_error_event_the_sdk_raises(openai_gateway, mode) -> None:
    fake, server = openai_gateway
    fake.mode = mode
    stream = sdk(server).images.generate(model="openai/gpt-image-1", prompt="p", stream=True,
                                         partial_images=1)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for event in stream:
            seen.append(event.type)
    assert seen == ["image_generation.partial_image"]
    assert caught.value.body["code"] in ("upstream_disconnected", "upstream_timeout")


def test_raw_error_event_shape(openai_gateway) -> None:
    fake, server = openai_gateway
    fake.mode = "drop_mid_stream"
    with httpx.stream("POST", f"{server.url}/v1/images/generations", timeout=30,
                      json={"model": "openai/gpt-image-1", "prompt": "p", "stream": True}) as r:
        text = r.read().decode()
    frames = [f.split("\n") for f in text.split("\n\n") if f.strip()]
    # Every frame is numbered within the job (a client that lost it resumes after it).
    assert [f[0] for f in frames] == [f"id: {n}" for n in range(1, len(frames) + 1)]
    frame = next(f for f in frames if "event: error" in f)
    payload = json.loads(frame[-1].removeprefix("data: "))
    assert payload["type"] == "error"
    validate("ErrorResponse", {"error": payload["error"]})
