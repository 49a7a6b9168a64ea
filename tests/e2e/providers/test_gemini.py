"""Provider ``gemini`` (Gemini API and Vertex AI) against a fake Google, through the SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.support.clients import expect_error as shared_expect_error
from tests.support.clients import sdk
from tests.support.fakes.google import (
    API_KEY,
    CLOUD_PLATFORM,
    PROJECT,
    TOKEN_AUDIENCE,
    FakeGoogle,
    Reply,
    encoded_image,
    error_body,
    finish_blocked,
    new_private_key,
    prompt_blocked,
    text_only,
    write_service_account,
)
from tests.support.gateways import start_gateway
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.servers import RunningServer
from tests.support.stack import Stack, upstream_and_gateway

VERTEX_PATH = f"/v1/projects/{PROJECT}/locations/global/publishers/google/models"


def vertex_model(name: str, upstream: str, url: str, auth: str) -> str:
    return f"""
  - name: {name}
    provider: gemini
    upstream_model: {upstream}
    api_key: null
    project: {PROJECT}
    base_url: {url}
    {auth}
"""


def gateway_yaml(url: str, account: Path) -> str:
    return f"""
providers:
  gemini: {{api_key: {API_KEY}, base_url: "{url}"}}
models:
{vertex_model("vertex/gemini-3-pro-image", "gemini-3-pro-image", url,
              f"credentials_file: {account}")}
{vertex_model("vertex/gemini-3.1-flash-image", "gemini-3.1-flash-image", url,
              f"credentials_file: {account}")}
{vertex_model("static/gemini-2.5-flash-image", "gemini-2.5-flash-image", url,
              "access_token: not-a-token-the-fake-knows")}
  - name: bad-key/gemini-2.5-flash-image
    provider: gemini
    upstream_model: gemini-2.5-flash-image
    api_key: wrong-key
  - name: google/retired-image
    provider: gemini
    upstream_model: gemini-2.0-flash-preview-image-generation
"""


@pytest.fixture(scope="module")
def google_stack(tmp_path_factory) -> Iterator[tuple[Stack[FakeGoogle], Path]]:
    """The fake Google, trusting a service account whose token_uri is the fake, a gateway for
    the module configured by gateway_yaml, and that service-account file."""
    key = new_private_key()
    account = tmp_path_factory.mktemp("sa") / "sa.json"

    def with_account(url: str) -> str:
        return gateway_yaml(url, write_service_account(account, f"{url}/token", key))

    with upstream_and_gateway(FakeGoogle(public_keys=[key.public_key()]), with_account) as stack:
        yield stack, account


@pytest.fixture
def gateway(google_stack) -> Stack[FakeGoogle]:
    """The module's gateway and its fake (reset): ``fake, server = gateway``."""
    return google_stack[0].reset()


@pytest.fixture
def google(google_stack) -> tuple[FakeGoogle, str, Path]:
    """The fake (reset), its URL, and the service-account file, for tests that start
    gateways of their own against it."""
    stack, account = google_stack
    stack.reset()
    return stack.fake, stack.upstream.url, account


def generate(server: RunningServer, **kwargs):
    raw = sdk(server).images.with_raw_response.generate(prompt="a lighthouse at dusk", **kwargs)
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    return raw, body


def expect_error(server: RunningServer, exc_type, **kwargs):
    return shared_expect_error(server, exc_type, prompt="a lighthouse at dusk", **kwargs)

# --- success ---------------------------------------------------------------------------------

def test_gemini_api_fans_out_n_parallel_calls(gateway) -> None:
    fake, server = gateway
    fake.delay = 0.3
    _, body = generate(server, model="google/gemini-2.5-flash-image", n=3)
    assert fake.max_in_flight == 3, "the three calls ran at the same time"
    images = [decode(d["b64_json"]) for d in body["data"]]
    # The fake answers JPEG; the client asked for nothing, so it gets PNG.
    assert [(i.format, i.size) for i in images] == [("PNG", (1024, 1024))] * 3
    assert len({i.getpixel((0, 0)) for i in images}) == 3, "three different images"
    assert body["size"] == "1024x1024" and body["output_format"] == "png"
    assert "text" not in body and "parts" not in body and "filtered" not in body
    usage = body["usage"]
    assert usage["input_tokens"] == 27 and usage["output_tokens"] == 3 * 1120
    assert usage["input_tokens_details"] == {"text_tokens": 27, "image_tokens": 0}
    assert usage["output_tokens_details"] == {"image_tokens": 3360, "text_tokens": 0}

    sent = fake.generation_requests()
    assert len(sent) == 3
    assert {r.path for r in sent} == {"/v1beta/models/gemini-2.5-flash-image:generateContent"}
    assert sent[0].headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent[0].headers
    assert sent[0].body == {
        "contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "candidateCount": 1},
    }


def test_vertex_with_service_account(gateway) -> None:
    fake, server = gateway
    _, body = generate(server, model="vertex/gemini-3-pro-image", n=3,
                         output_format="jpeg", output_compression=80)
    # Thought parts (a draft 64x64 image among them) are skipped: three final images.
    images = [decode(d["b64_json"]) for d in body["data"]]
    assert [(i.format, i.size) for i in images] == [("JPEG", (1024, 1024))] * 3
    assert body["output_format"] == "jpeg" and body["usage"]["output_tokens"] == 3 * 1270

    sent = fake.generation_requests()
    assert {r.path for r in sent} == {f"{VERTEX_PATH}/gemini-3-pro-image:generateContent"}
    bearers = {r.headers["authorization"] for r in sent}
    assert len(bearers) == 1 and next(iter(bearers)).startswith("Bearer fake-token-")
    assert "x-goog-api-key" not in sent[0].headers
    assert sent[0].body["generationConfig"]["imageConfig"] == {
        "imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 80}}


@pytest.mark.parametrize(("model", "image_config", "size"), [
    ("vertex/gemini-3-pro-image", {"aspectRatio": "3:2", "imageSize": "2K"}, "2496x1664"),
    ("google/gemini-2.5-flash-image", {"aspectRatio": "3:2"}, "1248x832"),
])
def test_size_becomes_aspect_ratio_and_tier(gateway, model, image_config, size) -> None:
    fake, server = gateway
    _, body = generate(server, model=model, size="1536x1024")
    assert fake.generation_requests()[0].body["generationConfig"]["imageConfig"] == image_config
    assert body["size"] == size and decode(body["data"][0]["b64_json"]).size == tuple(
        int(v) for v in size.split("x"))


def test_aspect_ratio_and_resolution_are_sent_as_given(gateway) -> None:
    fake, server = gateway
    _, body = generate(server, model="nano-banana-2",
                       extra_body={"aspect_ratio": "16:9", "resolution": "512"})
    sent = fake.generation_requests()[0]
    assert sent.path == "/v1beta/models/gemini-3.1-flash-image:generateContent"
    assert sent.body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9",
                                                            "imageSize": "512"}
    assert body["size"] == "672x384"


def test_thinking_modalities_and_text_parts(gateway) -> None:
    fake, server = gateway
    _, body = generate(server, model="nano-banana-2", extra_body={
        "thinking_level": "high", "response_modalities": ["TEXT", "IMAGE"],
        "media_resolution": "low"})
    config = fake.generation_requests()[0].body["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    # The model's words reach the client; its thoughts do not.
    assert body["text"] == fake.text
    assert body["parts"] == [{"type": "text", "text": fake.text}, {"type": "image", "index": 0}]
    assert len(body["data"]) == 1
    assert body["usage"]["output_tokens_details"] == {"image_tokens": 1120,
                                                      "text_tokens": 10 + 150}


def test_repeated_final_image_is_returned_once(gateway) -> None:
    fake, server = gateway
    fake.duplicate = True
    _, body = generate(server, model="nano-banana-pro")
    assert len(body["data"]) == 1


def test_only_thought_images_fall_back_to_the_last_one(gateway) -> None:
    fake, server = gateway
    draft = {"inlineData": {"mimeType": "image/png", "data": _png(32, 32)}, "thought": True}
    last = {"inlineData": {"mimeType": "image/png", "data": _png(48, 48)}, "thought": True}
    fake.script = [{"candidates": [{"content": {"role": "model", "parts": [draft, last]},
                                    "finishReason": "STOP"}]}]
    _, body = generate(server, model="google/gemini-2.5-flash-image")
    assert [decode(d["b64_json"]).size for d in body["data"]] == [(48, 48)]


def test_aliases_reach_their_upstream_models(gateway) -> None:
    fake, server = gateway
    generate(server, model="nano-banana-pro")
    generate(server, model="nano-banana-2")
    assert [r.model for r in fake.generation_requests()] == ["gemini-3-pro-image",
                                                             "gemini-3.1-flash-image"]


def test_parameters_gemini_cannot_use_are_dropped_and_named(gateway) -> None:
    fake, server = gateway
    raw, _ = generate(server, model="google/gemini-2.5-flash-image", style="vivid",
                      background="opaque", quality="high")
    assert set(raw.headers["x-dropped-params"].split(",")) == {"style", "background", "quality"}
    sent = fake.generation_requests()[0].body
    assert set(sent) == {"contents", "generationConfig"}


def test_stream_is_emulated_with_one_completed_event(gateway) -> None:
    _, server = gateway
    events = list(sdk(server).images.generate(model="nano-banana-2", prompt="p", stream=True))
    assert [e.type for e in events] == ["image_generation.completed"]
    assert decode(events[0].b64_json).format == "PNG"


# --- refusals that arrive as HTTP 200 --------------------------------------------------------

@pytest.mark.parametrize(("answer", "reason", "said"), [
    (prompt_blocked("PROHIBITED_CONTENT", "The prompt is not allowed."), "PROHIBITED_CONTENT",
     "The prompt is not allowed."),
    (prompt_blocked("SAFETY"), "SAFETY", "blocked"),
    (prompt_blocked("IMAGE_SAFETY"), "IMAGE_SAFETY", "blocked"),
    (finish_blocked("IMAGE_SAFETY"), "IMAGE_SAFETY", "Unable to show the generated image."),
    (finish_blocked("IMAGE_PROHIBITED_CONTENT", "The model output could not be generated."),
     "IMAGE_PROHIBITED_CONTENT", "could not be generated"),
    (finish_blocked("SAFETY", "Stopped for safety."), "SAFETY", "Stopped for safety."),
    (finish_blocked("PROHIBITED_CONTENT", "Prohibited."), "PROHIBITED_CONTENT", "Prohibited."),
    (finish_blocked("IMAGE_RECITATION", "Too close to a known work."), "IMAGE_RECITATION",
     "known work"),
])
def test_blocked_answers_are_content_policy_violations(gateway, answer, reason, said) -> None:
    fake, server = gateway
    fake.script = [answer]
    error = expect_error(server, openai.BadRequestError, model="google/gemini-2.5-flash-image")
    assert error.status_code == 400 and error.code == "content_policy_violation"
    assert reason in error.message and said in error.message


@pytest.mark.parametrize("answer", [
    text_only("I can only describe a lighthouse, not draw one."),
    text_only("I can only describe a lighthouse, not draw one.", finish="NO_IMAGE"),
])
def test_text_without_an_image_is_a_400_carrying_the_text(gateway, answer) -> None:
    fake, server = gateway
    fake.script = [answer]
    error = expect_error(server, openai.BadRequestError, model="nano-banana-2",
                         extra_body={"response_modalities": ["TEXT", "IMAGE"]})
    assert error.code == "no_image_returned"
    assert "I can only describe a lighthouse" in error.message


def test_partly_blocked_fan_out_lists_the_blocked_ones(gateway) -> None:
    fake, server = gateway
    fake.script = [finish_blocked("IMAGE_SAFETY", "This one was blocked.")]
    _, body = generate(server, model="google/gemini-2.5-flash-image", n=3)
    assert len(body["data"]) == 2
    assert body["filtered"] == [{"reason": "IMAGE_SAFETY", "message": "This one was blocked."}]


def test_fully_blocked_fan_out_is_a_400(gateway) -> None:
    fake, server = gateway
    fake.script = [finish_blocked("IMAGE_SAFETY"), prompt_blocked("PROHIBITED_CONTENT")]
    error = expect_error(server, openai.BadRequestError, model="google/gemini-2.5-flash-image",
                         n=2)
    assert error.code == "content_policy_violation"
    assert "IMAGE_SAFETY" in error.message and "PROHIBITED_CONTENT" in error.message


# --- HTTP errors -------------------------------------------------------------------------------

RETRY_INFO = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}]


@pytest.mark.parametrize(("reply", "exc_type", "status", "code", "retry_after"), [
    (Reply(400, error_body(400, "INVALID_ARGUMENT", "Unsupported aspect ratio.")),
     openai.BadRequestError, 400, "invalid_argument", None),
    (Reply(404, error_body(404, "NOT_FOUND", "models/x is not found.")),
     openai.NotFoundError, 404, "model_not_found", None),
    (Reply(429, error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded."), {"retry-after": "7"}),
     openai.RateLimitError, 429, "rate_limit_exceeded", "7"),
    (Reply(429, error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", RETRY_INFO)),
     openai.RateLimitError, 429, "rate_limit_exceeded", "13"),
    (Reply(403, error_body(403, "PERMISSION_DENIED", "Vertex AI API has not been used.")),
     openai.InternalServerError, 502, "upstream_auth_failed", None),
    (Reply(401, error_body(401, "UNAUTHENTICATED", "Invalid credentials.")),
     openai.InternalServerError, 502, "upstream_auth_failed", None),
    (Reply(500, error_body(500, "INTERNAL", "An internal error has occurred.")),
     openai.InternalServerError, 502, "upstream_error", None),
    (Reply(503, error_body(503, "UNAVAILABLE", "The model is overloaded.")),
     openai.InternalServerError, 502, "upstream_error", None),
    (Reply(502, b"<html>Bad Gateway</html>"),
     openai.InternalServerError, 502, "upstream_error", None),
])
def test_http_errors_are_mapped(gateway, reply, exc_type, status, code, retry_after) -> None:
    fake, server = gateway
    fake.script = [reply]
    error = expect_error(server, exc_type, model="google/gemini-2.5-flash-image")
    assert error.status_code == status and error.code == code
    assert error.response.headers.get("retry-after") == retry_after
    if reply.body.startswith(b"{"):
        assert orjson_message(reply.body) in error.message


@pytest.mark.parametrize("reply", [
    Reply(200, b"<html>not json</html>"),
    Reply(200, {"candidates": ["not an object"]}),
    Reply(200, {"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": "bm90IGFuIGltYWdl"}}]}}]}),
])
def test_garbage_answers_are_a_502(gateway, reply) -> None:
    fake, server = gateway
    fake.script = [reply]
    error = expect_error(server, openai.InternalServerError,
                         model="google/gemini-2.5-flash-image")
    assert error.status_code == 502 and error.code == "upstream_invalid_response"


def test_invalid_api_key_is_a_502(gateway) -> None:
    _, server = gateway
    error = expect_error(server, openai.InternalServerError,
                         model="bad-key/gemini-2.5-flash-image")
    assert error.code == "upstream_auth_failed" and "API key not valid" in error.message


def test_retired_model_is_model_not_found(gateway) -> None:
    _, server = gateway
    error = expect_error(server, openai.NotFoundError, model="google/retired-image")
    assert error.code == "model_not_found" and "is not found" in error.message


def test_a_failing_call_fails_the_fan_out(gateway) -> None:
    fake, server = gateway
    fake.script = [Reply(429, error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded."))]
    fake.delay = 0.2
    error = expect_error(server, openai.RateLimitError, model="google/gemini-2.5-flash-image",
                         n=3)
    assert error.code == "rate_limit_exceeded"


# --- Vertex credentials ----------------------------------------------------------------------

def vertex_gateway(url: str, auth: str):
    return start_gateway(
        "models:\n" + vertex_model("vertex/gemini-3-pro-image", "gemini-3-pro-image", url, auth))


def test_token_is_refreshed_before_it_expires(google, tmp_path) -> None:
    fake, url, _ = google
    key = new_private_key()
    fake.public_keys.append(key.public_key())
    account = write_service_account(tmp_path / "sa.json", f"{url}/token", key)
    # 301 s: as soon as a second passes, fewer than the 300 s margin remain.
    fake.token_lifetime = 301
    with vertex_gateway(url, f"credentials_file: {account}") as server:
        generate(server, model="vertex/gemini-3-pro-image")
        time.sleep(1.1)
        generate(server, model="vertex/gemini-3-pro-image")
    assert len(fake.token_requests) == 2
    claims = fake.token_requests[0]
    assert claims["scope"] == CLOUD_PLATFORM and claims["aud"] == TOKEN_AUDIENCE
    first, second = (r.headers["authorization"] for r in fake.generation_requests())
    assert first != second and second.startswith("Bearer fake-token-")
    # The first token was still valid when the second was fetched.
    assert fake.issued[first.split()[1]] > time.monotonic()


def test_token_is_cached_and_fetched_once_for_parallel_calls(google, tmp_path) -> None:
    fake, url, account = google
    with vertex_gateway(url, f"credentials_file: {account}") as server:
        generate(server, model="vertex/gemini-3-pro-image", n=3)
        generate(server, model="vertex/gemini-3-pro-image")
    assert len(fake.token_requests) == 1
    assert len({r.headers["authorization"] for r in fake.generation_requests()}) == 1


def test_static_access_token(google) -> None:
    fake, url, _ = google
    fake.static_tokens = {"ya29.operator-token"}
    with vertex_gateway(url, "access_token: ya29.operator-token") as server:
        generate(server, model="vertex/gemini-3-pro-image")
    assert fake.generation_requests()[0].headers["authorization"] == "Bearer ya29.operator-token"
    assert fake.token_requests == []


def test_rejected_static_token_is_a_502(gateway) -> None:
    _, server = gateway
    error = expect_error(server, openai.InternalServerError,
                         model="static/gemini-2.5-flash-image")
    assert error.code == "upstream_auth_failed"
    assert "not-a-token" not in error.message


def test_application_default_credentials(google, monkeypatch) -> None:
    fake, url, account = google
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account))
    with vertex_gateway(url, "") as server:
        generate(server, model="vertex/gemini-3-pro-image")
    assert len(fake.token_requests) == 1


def test_token_endpoint_refusal_is_a_502(google, tmp_path) -> None:
    fake, url, _ = google
    # Signed with a key the fake does not know.
    account = write_service_account(tmp_path / "other.json", f"{url}/token", new_private_key())
    with vertex_gateway(url, f"credentials_file: {account}") as server:
        error = expect_error(server, openai.InternalServerError,
                             model="vertex/gemini-3-pro-image")
    assert error.code == "upstream_auth_failed" and "invalid_grant" in error.message
    assert fake.generation_requests() == []


# --- configuration -----------------------------------------------------------------------------


def orjson_message(raw: bytes) -> str:
    return orjson.loads(raw)["error"]["message"]


def _png(width: int, height: int) -> str:
    return encoded_image(width, height, (10, 20, 30))
