"""Provider ``azure`` against a fake Azure OpenAI resource, through the official SDK."""

from __future__ import annotations

import openai
import orjson
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

from tests.support.clients import expect_error, sdk
from tests.support.fakes.azure import (
    API_KEY,
    DEPLOYMENT_NOT_FOUND,
    ENTRA_TOKEN,
    FILTERED_200,
    FakeAzure,
)
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.stack import stack_fixture, upstream_and_gateway


def azure_yaml(endpoint: str) -> str:
    # Settings given once for the provider: every azure/* catalog model is served and inherits
    # them; azure/dall-e-3 overrides auth, api-version and deployment for itself.
    return f"""
providers:
  azure:
    endpoint: {endpoint}
    api_key: {API_KEY}
    deployments: {{gpt-image-1: img-prod}}
models:
  - name: azure/dall-e-3
    provider: azure
    endpoint: {endpoint}/openai/
    api_key: null                # drops the inherited key: one credential per model
    entra_token: {ENTRA_TOKEN}
    api_version: "2024-10-21"
    deployment: dall-e-3
  - name: azure/missing
    provider: azure
    upstream_model: gpt-image-1
    endpoint: {endpoint}
    api_key: {API_KEY}
    deployment: gpt-image-1-retired
"""


# One fake Azure resource and one gateway for the module; the fake is reset for every test.
azure = stack_fixture(FakeAzure, azure_yaml)


def test_generate_through_the_provider_level_deployment_map(azure) -> None:
    fake, server = azure
    raw = sdk(server).images.with_raw_response.generate(
        model="azure/gpt-image-1", prompt="a lighthouse", n=2, size="1536x1024", quality="high",
        output_format="jpeg", user="user-1")
    result = raw.parse()
    assert [decode(d.b64_json).size for d in result.data] == [(1536, 1024)] * 2
    assert result.size == "1536x1024" and result.quality == "high"
    assert result.usage.output_tokens == 272 and result.usage.input_tokens_details.text_tokens == 12
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    assert body["provider"] == "azure"

    call = fake.calls[-1]
    assert call.path == "/openai/deployments/img-prod/images/generations"
    assert call.query == {"api-version": "2025-04-01-preview"}
    assert call.headers["api-key"] == API_KEY and "authorization" not in call.headers
    assert call.body == {"model": "gpt-image-1", "prompt": "a lighthouse", "n": 2,
                         "size": "1536x1024", "quality": "high", "output_format": "jpeg",
                         "user": "user-1"}


def test_model_entry_overrides_auth_version_and_deployment(azure) -> None:
    fake, server = azure
    result = sdk(server).images.generate(model="azure/dall-e-3", prompt="a fox",
                                         style="natural", response_format="b64_json")
    assert decode(result.data[0].b64_json).size == (1024, 1024)
    assert result.data[0].revised_prompt == "A detailed picture of a fox"
    # Azure's content-filter annotations are not part of OpenAI's image object.
    assert set(result.data[0].model_dump(exclude_none=True)) == {"b64_json", "revised_prompt"}

    call = fake.calls[-1]
    assert call.path == "/openai/deployments/dall-e-3/images/generations"
    assert call.query == {"api-version": "2024-10-21"}
    assert call.headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
    assert "api-key" not in call.headers
    assert call.body["style"] == "natural" and call.body["response_format"] == "b64_json"


def test_dall_e_answers_with_urls_by_default_hosted_by_the_gateway(azure) -> None:
    """DALL-E's default is URLs, as in OpenAI's API; they are the gateway's own links (Azure's
    expire after 24 h and point at Azure's blob store)."""
    _, server = azure
    result = sdk(server).images.generate(model="azure/dall-e-3", prompt="a fox")
    assert result.data[0].url.startswith(f"{server.url}/v1/images/files/")
    assert result.data[0].revised_prompt


def test_stream_relays_partials_then_completed(azure) -> None:
    fake, server = azure
    fake.chunk_size = 509
    events = list(sdk(server).images.generate(
        model="azure/gpt-image-1", prompt="p", size="1024x1536", stream=True, partial_images=2))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert decode(events[-1].b64_json).size == (1024, 1536)
    assert events[-1].usage.total_tokens == 284
    call = fake.calls[-1]
    assert call.body["stream"] is True and call.body["partial_images"] == 2
    assert call.path == "/openai/deployments/img-prod/images/generations"


def test_a_large_final_image_streams_through_unchanged(azure, monkeypatch) -> None:
    """Azure's stream is OpenAI's: a final image past 64 KiB, in small chunks, is handed on as
    it arrives (tests/e2e/streaming/test_final_image_passed.py) and comes out byte for byte."""
    from tests.e2e.generations.test_large_images import BIG
    from tests.support.fakes import openai_upstream

    monkeypatch.setattr(openai_upstream, "png_b64", lambda *_: BIG)
    fake, server = azure
    fake.chunk_size = 16_384
    events = list(sdk(server).images.generate(model="azure/gpt-image-1", prompt="p",
                                              stream=True, partial_images=1))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent, ImageGenCompletedEvent]
    assert events[-1].b64_json == BIG and events[0].b64_json == BIG
    assert events[-1].usage.total_tokens == 284 and events[-1].size == "1024x1024"


def test_content_filter_mid_stream_is_an_error_event(azure) -> None:
    fake, server = azure
    fake.mode = "filter_mid_stream"
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for event in sdk(server).images.generate(model="azure/gpt-image-1", prompt="p",
                                                 stream=True, partial_images=2):
            seen.append(event.type)
    assert seen == ["image_generation.partial_image"]
    assert caught.value.body["code"] == "content_policy_violation"
    assert "filtered as a result of our safety system" in caught.value.body["message"]


FILTER_BODIES = {
    "dalle_error_response": {
        "code": "content_policy_violation", "type": "invalid_request_error", "param": None,
        "message": "Your request was rejected as a result of our safety system.",
        "inner_error": {"code": "ResponsibleAIPolicyViolation", "revised_prompt": "x",
                        "content_filter_results": {"sexual": {"filtered": True,
                                                              "severity": "high"}}}},
    "contentFilter": {"code": "contentFilter",
                      "message": "Your task failed as a result of our safety system."},
    "content_filter": {"code": "content_filter", "message": "Blocked by the content filter."},
    "moderation_blocked": {"code": "moderation_blocked", "type": "image_generation_user_error",
                           "message": "Your request was rejected by the safety system."},
    "inner_error_only": {"code": "BadRequest", "message": "Prompt refused.",
                         "inner_error": {"code": "ResponsibleAIPolicyViolation"}},
}


@pytest.mark.parametrize("shape", sorted(FILTER_BODIES))
def test_content_filter_shapes_are_content_policy_violations(azure, shape) -> None:
    fake, server = azure
    fake.mode, fake.status = "status", 400
    fake.status_body = orjson.dumps({"error": FILTER_BODIES[shape]})
    error = expect_error(server, openai.BadRequestError, model="azure/gpt-image-1")
    assert error.code == "content_policy_violation"
    assert error.body["message"] == FILTER_BODIES[shape]["message"]


def test_content_filter_as_a_200_with_an_error(azure) -> None:
    fake, server = azure
    fake.mode = "filter_200"
    error = expect_error(server, openai.BadRequestError, model="azure/gpt-image-1")
    assert error.code == "content_policy_violation" and error.body["message"] == FILTERED_200


def test_deployment_not_found_is_model_not_found(azure) -> None:
    _, server = azure
    error = expect_error(server, openai.NotFoundError, model="azure/missing")
    assert error.code == "model_not_found" and error.param == "model"
    assert "'gpt-image-1-retired'" in error.message and DEPLOYMENT_NOT_FOUND in error.message


def test_rate_limit_keeps_retry_after(azure) -> None:
    fake, server = azure
    fake.mode, fake.status = "status", 429
    fake.status_headers = {"retry-after": "20", "retry-after-ms": "20000"}
    fake.status_body = (b'{"error":{"code":"429","message":"Requests to the Images_Generations '
                        b'Operation have exceeded call rate limit. Please retry after 20 '
                        b'seconds."}}')
    error = expect_error(server, openai.RateLimitError, model="azure/gpt-image-1")
    assert error.code == "rate_limit_exceeded" and "Please retry after 20" in error.message
    assert error.response.headers["retry-after"] == "20"


def test_bad_key_is_a_502() -> None:
    def wrong_key(endpoint: str) -> str:
        return f'providers:\n  azure: {{endpoint: "{endpoint}", api_key: wrong}}\n'

    with upstream_and_gateway(FakeAzure(), wrong_key) as (fake, server):
        error = expect_error(server, openai.InternalServerError, model="azure/gpt-image-1.5")
    assert error.status_code == 502 and error.code == "upstream_auth_failed"
    assert "Access denied" in error.message
    assert fake.calls[-1].path == "/openai/deployments/gpt-image-1.5/images/generations"


def test_webp_is_refused_for_azure_gpt_image(azure) -> None:
    fake, server = azure
    error = expect_error(server, openai.BadRequestError, model="azure/gpt-image-1",
                         output_format="webp")
    assert error.param == "output_format" and not fake.calls
