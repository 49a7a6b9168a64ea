"""Provider ``xai`` against a fake xAI image API, through the official SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.clients import expect_error, sdk
from tests.support.fakes.xai import API_KEY, MODERATED, TICKS_PER_IMAGE, FakeXAI
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.stack import stack_fixture


def xai_yaml(base_url: str) -> str:
    # The providers: section alone serves every xai/* catalog model (and its aliases).
    return f"""
providers:
  xai: {{api_key: {API_KEY}, base_url: "{base_url}/v1"}}
models:
  - name: xai/bad-key
    provider: xai
    upstream_model: grok-imagine-image
    api_key: xai-wrong
"""


# One fake xAI and one gateway for the module; the fake is reset for every test.
xai = stack_fixture(FakeXAI, xai_yaml)


def test_size_becomes_ratio_and_tier_and_jpeg_becomes_png(xai) -> None:
    fake, server = xai
    raw = sdk(server).images.with_raw_response.generate(
        model="xai/grok-imagine-image", prompt="a harbour", n=2, size="1536x1024", user="u-1")
    result = raw.parse()
    images = [decode(d.b64_json) for d in result.data]
    assert [(i.format, i.size) for i in images] == [("PNG", (2048, 1365))] * 2
    assert images[0].getpixel((0, 0)) != images[1].getpixel((0, 0))
    assert result.size == "2048x1365" and result.output_format == "png"
    assert result.data[0].revised_prompt == "A vivid scene: a harbour"
    assert result.usage is None  # xAI reports a cost, not tokens
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    assert body["provider"] == "xai" and "x-dropped-params" not in raw.headers

    call = fake.calls[-1]
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.body == {"model": "grok-imagine-image", "prompt": "a harbour", "n": 2,
                         "response_format": "b64_json", "aspect_ratio": "3:2",
                         "resolution": "2k", "user": "u-1"}


def test_jpeg_requested_is_handed_on_without_its_data_url_prefix(xai) -> None:
    fake, server = xai
    result = sdk(server).images.generate(model="grok-imagine-image", prompt="p",
                                         output_format="jpeg", extra_body={"aspectRatio": "9:16"})
    assert result.data[0].b64_json == fake.sent_b64[-1]  # the upstream's bytes, untouched
    assert decode(result.data[0].b64_json).size == (576, 1024)
    assert result.size == "576x1024" and result.output_format == "jpeg"
    assert fake.calls[-1].body["aspect_ratio"] == "9:16"
    assert "resolution" not in fake.calls[-1].body


def test_webp_is_transcoded_with_the_requested_compression(xai) -> None:
    _, server = xai
    result = sdk(server).images.generate(
        model="xai/grok-imagine-image", prompt="p", output_format="webp", output_compression=50,
        extra_body={"aspect_ratio": "16:9", "resolution": "1k"})
    image = decode(result.data[0].b64_json)
    assert (image.format, image.size) == ("WEBP", (1024, 576))


def test_style_and_background_are_dropped_and_listed(xai) -> None:
    fake, server = xai
    raw = sdk(server).images.with_raw_response.generate(
        model="xai/grok-imagine-image", prompt="p", size="1024x1024", style="vivid",
        background="opaque", quality="high")
    assert decode(raw.parse().data[0].b64_json).size == (1024, 1024)
    assert set(raw.headers["x-dropped-params"].split(",")) == {"style", "background",
                                                               "quality"}
    sent = fake.calls[-1].body
    assert {"size", "style", "background", "quality"}.isdisjoint(sent)
    assert (sent["aspect_ratio"], sent["resolution"]) == ("1:1", "1k")


def test_quality_is_forwarded_where_the_model_takes_it(xai) -> None:
    fake, server = xai
    raw = sdk(server).images.with_raw_response.generate(
        model="xai/grok-imagine-image-2.0", prompt="p", quality="low",
        extra_body={"aspect_ratio": "21:9"})
    assert "x-dropped-params" not in raw.headers
    assert decode(raw.parse().data[0].b64_json).size == (1024, 439)
    assert fake.calls[-1].body["quality"] == "low"
    assert fake.calls[-1].body["aspect_ratio"] == "21:9"


def test_legacy_model_gets_neither_size_nor_ratio(xai) -> None:
    fake, server = xai
    raw = sdk(server).images.with_raw_response.generate(model="grok-2-image", prompt="p",
                                                        size="1024x1024")
    assert raw.headers["x-dropped-params"] == "size"
    assert raw.parse().size == "1024x768"
    assert set(fake.calls[-1].body) == {"model", "prompt", "n", "response_format"}
    assert fake.calls[-1].body["model"] == "grok-2-image-1212"


def test_url_response_format_is_hosted_by_the_gateway(xai) -> None:
    """xAI's own links are temporary and point elsewhere: the gateway asks for base64 and hands
    out links to images it hosts."""
    fake, server = xai
    result = sdk(server).images.generate(model="xai/grok-imagine-image", prompt="p",
                                         response_format="url")
    assert result.data[0].url.startswith(f"{server.url}/v1/images/files/")
    assert httpx.get(result.data[0].url).headers["content-type"] == "image/png"
    assert fake.calls[-1].body["response_format"] == "b64_json"


def test_stream_is_emulated_with_base64(xai) -> None:
    fake, server = xai
    events = list(sdk(server).images.generate(model="xai/grok-imagine-image", prompt="p",
                                              stream=True, partial_images=2))
    assert [e.type for e in events] == ["image_generation.completed"]
    assert decode(events[0].b64_json).format == "PNG"
    assert "stream" not in fake.calls[-1].body
    assert fake.calls[-1].body["response_format"] == "b64_json"


def test_content_moderation_400_is_a_content_policy_violation(xai) -> None:
    fake, server = xai
    fake.mode = "moderated"
    error = expect_error(server, openai.BadRequestError, model="xai/grok-imagine-image")
    assert error.code == "content_policy_violation" and error.body["message"] == MODERATED


def test_images_withheld_by_moderation_are_a_content_policy_violation(xai) -> None:
    fake, server = xai
    fake.withheld = 2
    error = expect_error(server, openai.BadRequestError, model="xai/grok-imagine-image", n=2)
    assert error.code == "content_policy_violation"


def test_the_images_moderation_let_through_are_returned(xai) -> None:
    fake, server = xai
    fake.withheld = 1
    raw = sdk(server).images.with_raw_response.generate(model="xai/grok-imagine-image",
                                                        prompt="p", n=3)
    result = raw.parse()
    assert len(result.data) == 2
    assert all(decode(d.b64_json).format == "PNG" for d in result.data)
    body = raw.http_response.json()
    assert [f["reason"] for f in body["filtered"]] == ["moderation"], "never silently fewer"
    # xAI states what it charged; that figure wins over the price table.
    assert body["cost"] == pytest.approx(TICKS_PER_IMAGE * 3 / 1e10)


def test_wrong_key_is_a_502_even_though_xai_says_400(xai) -> None:
    _, server = xai
    error = expect_error(server, openai.InternalServerError, model="xai/bad-key")
    assert error.status_code == 502 and error.code == "upstream_auth_failed"
    assert "Incorrect API key" in error.message


def test_rate_limit_keeps_retry_after(xai) -> None:
    fake, server = xai
    fake.mode, fake.status = "status", 429
    fake.status_headers = {"retry-after": "7"}
    fake.status_body = (b'{"code":"Some resource has been exhausted","error":"Your team has '
                        b'exceeded its image requests per second limit."}')
    error = expect_error(server, openai.RateLimitError, model="xai/grok-imagine-image")
    assert error.code == "rate_limit_exceeded" and "requests per second" in error.message
    assert error.response.headers["retry-after"] == "7"


def test_unknown_model_is_model_not_found(xai) -> None:
    fake, server = xai
    fake.mode, fake.status = "status", 404
    fake.status_body = (b'{"code":"Some requested entity was not found","error":"The model '
                        b'grok-imagine-image does not exist or your team does not have access '
                        b'to it."}')
    error = expect_error(server, openai.NotFoundError, model="xai/grok-imagine-image")
    assert error.code == "model_not_found" and "does not exist" in error.message


@pytest.mark.parametrize("body", [b'{"data":[{"b64_json":"data:image/jpeg;base64,bm9wZQ=="}]}',
                                  b'{"data":[{"b64_json":"data:image/jpeg,abc"}]}',
                                  b'{"data":[]}', b"<html>"])
def test_unusable_answers_are_502s(xai, body) -> None:
    fake, server = xai
    fake.mode, fake.status, fake.status_body = "status", 200, body
    error = expect_error(server, openai.InternalServerError, model="xai/grok-imagine-image")
    assert error.status_code == 502
    assert error.code in ("upstream_invalid_response", "upstream_no_image")
