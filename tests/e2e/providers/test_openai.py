"""Provider ``openai`` against a fake upstream that speaks OpenAI's real wire format."""

from __future__ import annotations

import openai
import pytest

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
