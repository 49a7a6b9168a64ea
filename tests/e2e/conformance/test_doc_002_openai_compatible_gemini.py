"""Seed 002, an OpenAI-compatible image API with GPT-only and Gemini-only fields: generation,
edit mode when ``image`` is given, masks, streaming with partial images, and the response's
``id``, ``text`` and ``parts``. The stored document lists its fields without a cURL sample;
these requests use every field it defines."""

from __future__ import annotations

import base64
import io
import json

import httpx
from PIL import Image

from tests.e2e.conformance.conftest import KEY, Conformance


def data_url(mode: str = "RGB", size: tuple[int, int] = (256, 256)) -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, (10, 120, 60)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_gpt_fields(conformance: Conformance) -> None:
    response = conformance.post("/v1/images/generations", {
        "model": "openai/gpt-image-2", "prompt": "a paper boat", "n": 2, "size": "1536x1024",
        "quality": "high", "background": "opaque", "output_format": "webp",
        "output_compression": 80, "moderation": "low", "response_format": "b64_json",
        "user": "hashed-user-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == response.headers["x-request-id"]
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    assert all("b64_json" in item and "url" not in item for item in body["data"])
    assert (body["background"], body["output_format"], body["quality"], body["size"]) == (
        "opaque", "webp", "high", "1536x1024")
    assert body["usage"]["total_tokens"] > 0


def test_image_in_a_generation_body_is_an_edit_with_mask(conformance: Conformance) -> None:
    mask = data_url("RGBA")
    response = conformance.post("/v1/images/generations", {
        "model": "openai/gpt-image-1-mini", "prompt": "add a red door", "image": data_url(),
        "mask": mask})
    assert response.status_code == 200, response.text
    sent = conformance.openai.requests[-1]
    assert [f[0] for f in sent.files] == ["image", "mask"]


def test_gemini_fields_and_text_parts(conformance: Conformance) -> None:
    response = conformance.post("/v1/images/generations", {
        "model": "nano-banana-2", "prompt": "a fox, and say what you drew",
        "image": [data_url(), data_url()], "size": "1536x1024", "thinking": "high",
        "responseModalities": ["text", "image"], "mediaResolution": "low",
        "output_format": "png"})
    assert response.status_code == 200, response.text
    body = response.json()
    sent = conformance.google.requests[-1].body
    config = sent["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    assert config["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert config["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "2K"}
    assert len(sent["contents"][0]["parts"]) == 3, "the text and two reference images"
    assert isinstance(body["text"], str) and body["text"]
    kinds = [part["type"] for part in body["parts"]]
    assert "text" in kinds and {"type": "image", "index": 0} in body["parts"]
    assert body["output_format"] == "png" and body["id"]


def test_stream_with_partial_images(conformance: Conformance) -> None:
    with httpx.stream("POST", f"{conformance.gateway.url}/v1/images/generations", timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "openai/gpt-image-2", "prompt": "p", "stream": True,
                            "partial_images": 2}) as response:
        text = response.read().decode()
    kinds = [json.loads(line[6:])["type"] for line in text.splitlines()
             if line.startswith("data: ")]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
