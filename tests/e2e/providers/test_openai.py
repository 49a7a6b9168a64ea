"""Provider ``openai`` against a fake upstream that speaks OpenAI's real wire format."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

from tests.support.clients import async_sdk, expect_error, sdk
from tests.support.fakes.openai_upstream import API_KEY
from tests.support.images import decode
from tests.support.schemas import validate


def test_generate_relays_images_and_usage(openai_gateway) -> None:
    fake, server = openai_gateway
    raw = sdk(server).images.with_raw_response.generate(
        model="openai/gpt-image-1", prompt="a lighthouse", n=2, size="1536x1024",
        quality="high", response_format="b64_json", user="user-1",
    )
    result = raw.parse()
    assert [decode(d.b64_json).size for d in result.data] == [(1536, 1024)] * 2
    assert result.size == "1536x1024" and result.quality == "high"
    assert result.usage.output_tokens == 272
    assert result.usage.input_tokens_details.text_tokens == 12
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    assert body["id"] == raw.headers["x-request-id"] and body["provider"] == "openai"

    sent = fake.requests[-1]
    # The gateway's upstream key, not the client's.
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body == {"model": "gpt-image-1", "prompt": "a lighthouse", "n": 2,
                         "size": "1536x1024", "quality": "high", "user": "user-1"}


async def test_async_generate(openai_gateway) -> None:
    _, server = openai_gateway
    result = await async_sdk(server).images.generate(model="openai/gpt-image-1", prompt="p")
    assert decode(result.data[0].b64_json).size == (1024, 1024)
    assert result.size == "1024x1024" and result.background == "opaque"


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


def test_unknown_compatible_model_gets_parameters_passed_through(openai_gateway) -> None:
    fake, server = openai_gateway
    sdk(server).images.generate(model="compatible/flux", prompt="p", size="1024x1024",
                                extra_body={"guidance_scale": 3.5})
    assert fake.requests[-1].body["model"] == "flux-dev"
    assert fake.requests[-1].body["guidance_scale"] == 3.5



def test_upstream_bad_key_is_a_502_that_keeps_the_message(openai_gateway) -> None:
    _, server = openai_gateway
    error = expect_error(server, openai.InternalServerError, model="openai/bad-key")
    assert error.status_code == 502 and error.code == "upstream_auth_failed"
    assert "Incorrect API key" in error.message


def test_upstream_rate_limit_is_a_429_with_retry_after(openai_gateway) -> None:
    fake, server = openai_gateway
    fake.mode, fake.status = "status", 429
    fake.status_headers = {"retry-after": "20"}
    fake.status_body = (b'{"error":{"message":"Rate limit reached for images per min.",'
                        b'"type":"requests","param":null,"code":"rate_limit_exceeded"}}')
    error = expect_error(server, openai.RateLimitError, model="openai/gpt-image-1")
    assert error.code == "rate_limit_exceeded" and "Rate limit reached" in error.message
    assert error.response.headers["retry-after"] == "20"


def test_upstream_400_is_handed_on_with_its_param(openai_gateway) -> None:
    fake, server = openai_gateway
    fake.mode, fake.status = "status", 400
    fake.status_body = (b'{"error":{"message":"Your request was rejected by the safety system.",'
                        b'"type":"image_generation_user_error","param":null,'
                        b'"code":"moderation_blocked"}}')
    error = expect_error(server, openai.BadRequestError, model="openai/gpt-image-1")
    assert error.code == "moderation_blocked" and error.type == "image_generation_user_error"


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_server_error_is_a_502(openai_gateway, status) -> None:
    fake, server = openai_gateway
    fake.mode, fake.status = "status", status
    fake.status_body = b'{"error":{"message":"The server had an error","type":"server_error"}}'
    error = expect_error(server, openai.InternalServerError, model="openai/gpt-image-1")
    assert error.status_code == 502 and f"HTTP {status}" in error.message
    assert "The server had an error" in error.message


@pytest.mark.parametrize("mode", ["garbage", "no_data"])
def test_upstream_garbage_is_a_502(openai_gateway, mode) -> None:
    fake, server = openai_gateway
    fake.mode = mode
    error = expect_error(server, openai.InternalServerError, model="openai/gpt-image-1")
    assert error.status_code == 502 and error.code == "upstream_invalid_response"


def test_upstream_hang_is_a_504_that_says_do_not_retry(openai_gateway) -> None:
    fake, server = openai_gateway
    fake.mode = "hang"  # the gateway's first_byte timeout for this model is 2 s
    error = expect_error(server, openai.InternalServerError, model="openai/gpt-image-1")
    assert error.status_code == 504 and error.code == "upstream_timeout"
    assert error.response.headers["x-should-retry"] == "false"


def test_unreachable_upstream_is_a_502(start_gateway) -> None:
    with start_gateway("""
models:
  - {name: openai/gpt-image-1, provider: openai, base_url: "http://127.0.0.1:9/v1"}
""") as server:
        error = expect_error(server, openai.InternalServerError, model="openai/gpt-image-1")
    assert error.status_code == 502 and error.code == "upstream_unreachable"


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
    frame = next(f for f in text.split("\n\n") if f.startswith("event: error"))
    payload = json.loads(frame.split("\ndata: ", 1)[1])
    assert payload["type"] == "error"
    validate("ErrorResponse", {"error": payload["error"]})
