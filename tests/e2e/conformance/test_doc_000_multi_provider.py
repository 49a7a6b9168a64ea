"""Seed 000, the multi-provider image API (``$BASE_URL/images/...``, served at the root): its
own cURL samples, only the host and the key changed."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conformance.conftest import Conformance

GENERATION = {
    "model": "openai/gpt-image-1",
    "prompt": "generate a lovely bath basket with attractive items in it",
    "n": 1,
    "quality": "high",
    "size": "1024x1024",
}
PHOTO_PATH = ("/resizer/v2/X4XAFRTDTNLN7FCKZQY663TLUQ.jpg?auth=b33090e2931bc7bd4f74df13155afd9"
              "fdba9a6a41bea66da0726b9cdf4f24da0&width=960&quality=80")

# Every model name in the document's tables.
MODELS = [
    "openai/gpt-image-1.5", "openai/gpt-image-1", "openai/gpt-image-1-mini", "openai/dall-e-3",
    "openai/dall-e-2", "azure/gpt-image-1", "azure/gpt-image-1-mini", "azure/dall-e-3",
    "vertex_ai/gemini-2.5-flash-image", "vertex_ai/gemini-2.5-flash-image-preview",
    "vertex_ai/gemini-3-pro-image-preview", "vertex_ai/imagen-3.0-generate-001",
    "vertex_ai/imagen-3.0-fast-generate-001", "vertex_ai/imagen-3.0-generate-002",
    "vertex_ai/imagen-4.0-generate-preview-06-06",
    "vertex_ai/imagen-4.0-fast-generate-preview-06-06",
    "vertex_ai/imagen-4.0-ultra-generate-preview-06-06", "xai/grok-2-image-1212",
]


def check_response(body: dict) -> None:
    """What the document promises: created, data[] with url (and optional b64_json,
    revised_prompt), usage with total_tokens, total_cost, currency, and prompt_tokens_details
    and completion_tokens_details (each an object or null)."""
    assert isinstance(body["created"], int)
    assert body["data"] and all(item["url"].startswith("http") for item in body["data"])
    usage = body["usage"]
    assert isinstance(usage["total_tokens"], int) and usage["total_tokens"] > 0
    assert isinstance(usage["total_cost"], float) and usage["total_cost"] > 0
    assert usage["currency"] == "USD"
    for details in ("prompt_tokens_details", "completion_tokens_details"):
        assert details in usage and isinstance(usage[details], dict | None), details
    assert usage["prompt_tokens_details"] == usage["input_tokens_details"]


def test_generation_sample(conformance: Conformance) -> None:
    response = conformance.post("/images/generations", GENERATION)
    assert response.status_code == 200, response.text
    body = response.json()
    check_response(body)
    image = httpx.get(body["data"][0]["url"])
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_edit_sample_with_an_image_url(conformance: Conformance) -> None:
    response = conformance.post("/images/edits", {
        "model": "openai/gpt-image-1",
        "prompt": "remove the ball",
        "image": f"{conformance.images.url}{PHOTO_PATH}",
        "size": "1024x1024",
        "n": 1,
    })
    assert response.status_code == 200, response.text
    check_response(response.json())
    sent = conformance.openai.requests[-1]
    assert [(f[0], f[2]) for f in sent.files] == [("image", "image/jpeg")]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_in_the_tables_resolves(conformance: Conformance, model: str) -> None:
    response = conformance.get(f"/models/{model}")
    assert response.status_code == 200, response.text
    assert response.json()["provider"] in ("openai", "azure", "gemini", "imagen", "xai")


def test_an_unknown_name_is_a_404_with_close_matches(conformance: Conformance) -> None:
    response = conformance.post("/images/generations", {**GENERATION,
                                                         "model": "openai/gpt-image-1.6"})
    assert response.status_code == 404
    assert "openai/gpt-image-1.5" in response.json()["error"]["message"]
