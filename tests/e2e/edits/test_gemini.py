"""Edits on provider ``gemini``: input images become ``inlineData`` parts after the text of the
user turn (providers.md §B.2); Gemini has no mask, and Imagen models cannot edit."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.support.clients import sdk
from tests.support.fakes.google import API_KEY, FakeGoogle
from tests.support.images import decode, encoded, named
from tests.support.schemas import validate
from tests.support.servers import RunningServer
from tests.support.stack import stack_fixture

PROMPT = "put a hat on the cat"


def inline(data: bytes, mime: str) -> dict[str, dict[str, str]]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


def google_yaml(base_url: str) -> str:
    return f"""
providers:
  gemini: {{api_key: {API_KEY}, base_url: "{base_url}"}}
  imagen: {{api_key: {API_KEY}, base_url: "{base_url}"}}
"""


# One fake Google and one gateway for the module; the fake is reset for every test.
google = stack_fixture(FakeGoogle, google_yaml)


def expect_error(server: RunningServer, **kwargs) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.edit(prompt=PROMPT, **kwargs)
    validate("ErrorResponse", caught.value.response.json())
    return caught.value


def test_two_images_become_inline_parts_after_the_text(google) -> None:
    fake, server = google
    first, second = encoded(64, 64), encoded(48, 32, (250, 200, 0), "JPEG")
    # The first as raw bytes (application/octet-stream): its type is sniffed, not trusted.
    raw = sdk(server).images.with_raw_response.edit(
        model="google/gemini-2.5-flash-image", prompt=PROMPT,
        image=[first, named(second, "b.png")], n=2)
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    assert "x-dropped-params" not in raw.headers
    assert [decode(d["b64_json"]).format for d in body["data"]] == ["PNG", "PNG"]

    sent = fake.generation_requests()
    assert len(sent) == 2, "n=2 is two calls, each with the input images"
    for request in sent:
        assert request.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
        assert request.body["contents"] == [{"role": "user", "parts": [
            {"text": PROMPT}, inline(first, "image/png"), inline(second, "image/jpeg")]}]
        assert request.parts == [("text", PROMPT), ("image/png", first),
                                 ("image/jpeg", second)]


def test_webp_input_keeps_its_type(google) -> None:
    fake, server = google
    source = encoded(40, 40, kind="WEBP")
    sdk(server).images.edit(model="nano-banana-pro", prompt=PROMPT,
                            image=named(source, "photo.webp"))
    (request,) = fake.generation_requests()
    assert request.model == "gemini-3-pro-image"
    assert request.inputs == [("image/webp", source)]


def test_mask_is_dropped_and_reported(google) -> None:
    fake, server = google
    source = encoded(64, 64)
    mask = encoded(64, 64, (0, 0, 0, 0), mode="RGBA")
    raw = sdk(server).images.with_raw_response.edit(
        model="google/gemini-3.1-flash-image", prompt=PROMPT, image=named(source, "a.png"),
        mask=named(mask, "mask.png"))
    assert raw.headers["x-dropped-params"] == "mask"
    assert decode(raw.parse().data[0].b64_json).format == "PNG"
    (request,) = fake.generation_requests()
    assert request.body["contents"][0]["parts"] == [{"text": PROMPT},
                                                    inline(source, "image/png")]


def test_imagen_cannot_edit_and_limits_are_the_catalog_s(google) -> None:
    fake, server = google
    one = named(encoded(16, 16), "a.png")
    error = expect_error(server, model="google/imagen-4.0-generate-001", image=one)
    assert (error.param, error.code) == ("model", "model_cannot_edit")
    assert "google/imagen-4.0-generate-001" in error.message
    four = [encoded(16, 16, (i, i, i)) for i in range(4)]
    error = expect_error(server, model="google/gemini-2.5-flash-image", image=four)
    assert (error.param, error.code) == ("image", "too_many_images")
    assert not fake.requests, "nothing reached Google"


def test_json_edit_reaches_gemini_as_inline_data(google) -> None:
    fake, server = google
    source = encoded(48, 48, (200, 10, 10))
    data_url = "data:image/png;base64," + base64.b64encode(source).decode()
    response = httpx.post(f"{server.url}/v1/images/edits", timeout=30, json={
        "model": "google/gemini-2.5-flash-image", "prompt": PROMPT, "image": data_url})
    assert response.status_code == 200, response.text
    validate("ImagesResponse", response.json())
    (request,) = fake.generation_requests()
    assert request.body["contents"][0]["parts"] == [{"text": PROMPT},
                                                    inline(source, "image/png")]
