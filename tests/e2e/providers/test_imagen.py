"""Provider ``imagen`` (``:predict`` on Vertex AI and the Gemini API) against a fake Google."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.clients import expect_error as shared_expect_error
from tests.support.clients import sdk
from tests.support.fakes.google import (
    API_KEY,
    PROJECT,
    FakeGoogle,
    Reply,
    error_body,
    new_private_key,
    write_service_account,
)
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.servers import RunningServer
from tests.support.stack import Stack, upstream_and_gateway

MODEL = "google/imagen-4.0-generate-001"
VERTEX_PATH = f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models"


def imagen_yaml(url: str, account: Path) -> str:
    return f"""
providers:
  imagen: {{project: {PROJECT}, credentials_file: "{account}", base_url: "{url}"}}
models:
  - name: gemini-api/imagen-4.0-generate-001
    provider: imagen
    upstream_model: imagen-4.0-generate-001
    project: null
    credentials_file: null
    api_key: {API_KEY}
  - name: enhanced/imagen-4.0-generate-001
    provider: imagen
    upstream_model: imagen-4.0-generate-001
    enhance_prompt: true
    person_generation: allow_adult
    safety_setting: block_only_high
"""


@pytest.fixture(scope="module")
def imagen(tmp_path_factory) -> Iterator[Stack[FakeGoogle]]:
    """The fake Google, trusting a service account whose token_uri is the fake, and a gateway
    for the module."""
    key = new_private_key()
    account_file = tmp_path_factory.mktemp("sa") / "sa.json"

    def gateway_yaml(url: str) -> str:
        return imagen_yaml(url, write_service_account(account_file, f"{url}/token", key))

    with upstream_and_gateway(FakeGoogle(public_keys=[key.public_key()]), gateway_yaml) as stack:
        yield stack


@pytest.fixture
def gateway(imagen) -> Stack[FakeGoogle]:
    return imagen.reset()


def generate(server: RunningServer, **kwargs):
    raw = sdk(server).images.with_raw_response.generate(prompt="a red fox in snow", **kwargs)
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    return body


def expect_error(server: RunningServer, exc_type, **kwargs):
    return shared_expect_error(server, exc_type, prompt="a red fox in snow", **kwargs)

def test_vertex_draws_n_images_in_one_call(gateway) -> None:
    fake, server = gateway
    body = generate(server, model=MODEL, n=3)
    images = [decode(d["b64_json"]) for d in body["data"]]
    assert [(i.format, i.size) for i in images] == [("PNG", (1024, 1024))] * 3
    assert body["size"] == "1024x1024" and "filtered" not in body
    assert all("revised_prompt" not in d for d in body["data"])

    [sent] = fake.requests
    assert sent.path == f"{VERTEX_PATH}/imagen-4.0-generate-001:predict"
    assert sent.headers["authorization"].startswith("Bearer fake-token-")
    assert sent.body == {"instances": [{"prompt": "a red fox in snow"}],
                         "parameters": {"sampleCount": 3, "includeRaiReason": True}}


def test_filtered_images_are_listed(gateway) -> None:
    fake, server = gateway
    fake.rai_filtered = 1
    body = generate(server, model=MODEL, n=3)
    assert len(body["data"]) == 2
    [entry] = body["filtered"]
    assert entry["reason"] == "RAI_FILTERED" and "safety filter" in entry["message"]


def test_all_filtered_is_a_content_policy_violation(gateway) -> None:
    fake, server = gateway
    fake.rai_filtered = 2
    error = expect_error(server, openai.BadRequestError, model=MODEL, n=2)
    assert error.code == "content_policy_violation"
    assert "Support codes: 56562880" in error.message


def test_empty_answer_is_a_content_policy_violation(gateway) -> None:
    fake, server = gateway
    fake.script = [{}]
    error = expect_error(server, openai.BadRequestError, model=MODEL)
    assert error.code == "content_policy_violation" and "no image" in error.message


def test_seed_turns_the_watermark_off_and_negative_prompt_is_sent(gateway) -> None:
    fake, server = gateway
    generate(server, model=MODEL, extra_body={"seed": 42, "negative_prompt": "blur"})
    params = fake.requests[0].body["parameters"]
    assert params["seed"] == 42 and params["addWatermark"] is False
    assert params["negativePrompt"] == "blur"


@pytest.mark.parametrize(("model", "request_size", "expected", "size"), [
    (MODEL, "1536x1024", {"aspectRatio": "4:3", "sampleImageSize": "2K"}, "2560x1792"),
    (MODEL, "16:9", {"aspectRatio": "16:9"}, "1408x768"),
    ("google/imagen-4.0-fast-generate-001", "1536x1024", {"aspectRatio": "4:3"}, "1280x896"),
])
def test_size_becomes_ratio_and_sample_image_size(gateway, model, request_size, expected,
                                                  size) -> None:
    fake, server = gateway
    body = generate(server, model=model, size=request_size)
    params = fake.requests[0].body["parameters"]
    assert {k: params[k] for k in ("aspectRatio", "sampleImageSize") if k in params} == expected
    assert body["size"] == size


def test_resolution_is_sent_as_sample_image_size(gateway) -> None:
    fake, server = gateway
    generate(server, model=MODEL, extra_body={"resolution": "2K"})
    assert fake.requests[0].body["parameters"]["sampleImageSize"] == "2K"


def test_output_format_is_asked_of_vertex_or_transcoded(gateway) -> None:
    fake, server = gateway
    jpeg = generate(server, model=MODEL, output_format="jpeg", output_compression=70)
    assert fake.requests[0].body["parameters"]["outputOptions"] == {
        "mimeType": "image/jpeg", "compressionQuality": 70}
    assert decode(jpeg["data"][0]["b64_json"]).format == "JPEG"
    webp = generate(server, model=MODEL, output_format="webp")
    assert "outputOptions" not in fake.requests[1].body["parameters"]
    assert decode(webp["data"][0]["b64_json"]).format == "WEBP"
    assert webp["output_format"] == "webp"


def test_settings_reach_the_parameters_and_enhanced_prompt_is_revised(gateway) -> None:
    fake, server = gateway
    body = generate(server, model="enhanced/imagen-4.0-generate-001", n=2)
    params = fake.requests[0].body["parameters"]
    assert params["enhancePrompt"] is True and params["personGeneration"] == "allow_adult"
    assert params["safetySetting"] == "block_only_high"
    assert [d["revised_prompt"] for d in body["data"]] == [
        "A detailed, enhanced version of: a red fox in snow"] * 2


def test_gemini_api_backend(gateway) -> None:
    fake, server = gateway
    body = generate(server, model="gemini-api/imagen-4.0-generate-001", n=2,
                    output_format="jpeg")
    [sent] = fake.requests
    assert sent.path == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent.headers["x-goog-api-key"] == API_KEY and "authorization" not in sent.headers
    # The Gemini API is not asked for a format: the gateway transcodes.
    assert sent.body["parameters"] == {"sampleCount": 2, "includeRaiReason": True}
    assert [decode(d["b64_json"]).format for d in body["data"]] == ["JPEG"] * 2


@pytest.mark.parametrize("param", [{"seed": 7}, {"negative_prompt": "blur"}])
def test_gemini_api_never_sends_vertex_only_parameters(gateway, param) -> None:
    """The Gemini API backend takes neither: dropped and reported like any parameter a model
    cannot use (the default policy), and not offered by GET /v1/models."""
    fake, server = gateway
    raw = sdk(server).images.with_raw_response.generate(
        model="gemini-api/imagen-4.0-generate-001", prompt="a red fox", extra_body=param)
    assert raw.headers["x-dropped-params"] == next(iter(param))
    sent = fake.requests[-1].body["parameters"]
    assert {"seed", "negativePrompt", "addWatermark"}.isdisjoint(sent)
    card = sdk(server).models.retrieve("gemini-api/imagen-4.0-generate-001")
    assert next(iter(param)) not in card.model_extra["parameters"]


@pytest.mark.parametrize(("reply", "exc_type", "code"), [
    (Reply(400, error_body(400, "INVALID_ARGUMENT", "Image generation failed with the "
           "following error: The prompt could not be submitted. This prompt contains sensitive "
           "words that violate Google's Responsible AI practices.")),
     openai.BadRequestError, "content_policy_violation"),
    (Reply(404, error_body(404, "NOT_FOUND", "Publisher Model was not found.")),
     openai.NotFoundError, "model_not_found"),
    (Reply(429, error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded for "
           "aiplatform.googleapis.com/online_prediction_requests_per_base_model.")),
     openai.RateLimitError, "rate_limit_exceeded"),
])
def test_http_errors(gateway, reply, exc_type, code) -> None:
    fake, server = gateway
    fake.script = [reply]
    error = expect_error(server, exc_type, model=MODEL)
    assert error.code == code


def test_dropped_parameters_are_named(gateway) -> None:
    _, server = gateway
    raw = sdk(server).images.with_raw_response.generate(
        model=MODEL, prompt="p", style="natural", quality="hd")
    assert set(raw.headers["x-dropped-params"].split(",")) == {"style", "quality"}
