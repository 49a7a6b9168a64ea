"""Edits on provider ``azure``: the official SDK's multipart reaches the fake Azure resource's
``/openai/deployments/{d}/images/edits?api-version=…`` part for part (providers.md §A.2)."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent

from tests.support.clients import sdk
from tests.support.fakes.azure import API_KEY, FakeAzure
from tests.support.images import decode, encoded, half_transparent, named
from tests.support.schemas import validate
from tests.support.stack import stack_fixture

EDITS_PATH = "/openai/deployments/img-prod/images/edits"


def azure_yaml(endpoint: str) -> str:
    return f"""
providers:
  azure:
    endpoint: {endpoint}
    api_key: {API_KEY}
    deployments: {{gpt-image-1: img-prod}}
"""


# One fake Azure resource and one gateway for the module; the fake is reset for every test.
azure = stack_fixture(FakeAzure, azure_yaml)


def test_single_file_goes_to_the_deployment_edits_path_as_image(azure) -> None:
    fake, server = azure
    source = encoded(64, 64)
    raw = sdk(server).images.with_raw_response.edit(
        model="azure/gpt-image-1", prompt="make it red", image=named(source, "photo.png"), n=2,
        size="1024x1024", quality="low", input_fidelity="high")
    result = raw.parse()
    assert [decode(d.b64_json).size for d in result.data] == [(1024, 1024)] * 2
    validate("ImagesResponse", raw.http_response.json())
    assert "x-dropped-params" not in raw.headers

    call = fake.calls[-1]
    assert call.path == EDITS_PATH
    assert call.query == {"api-version": "2025-04-01-preview"}
    assert call.headers["api-key"] == API_KEY and "authorization" not in call.headers
    assert call.headers["content-type"].startswith("multipart/form-data")
    # Scalars are text parts as the SDK sends them; input_fidelity is forwarded.
    assert call.body == {"model": "gpt-image-1", "prompt": "make it red", "n": "2",
                         "size": "1024x1024", "quality": "low", "input_fidelity": "high"}
    assert call.files == [("image", "photo.png", "image/png", source)]


def test_list_and_mask_parts_are_forwarded_exactly(azure) -> None:
    fake, server = azure
    first, second = encoded(64, 48), encoded(32, 32, (1, 2, 3), "JPEG")
    mask = half_transparent(64, 48)
    # Raw bytes reach the gateway as application/octet-stream named "upload"; Azure (like
    # OpenAI, which the fake's part checks follow) refuses octet-stream: the type is sniffed.
    sdk(server).images.edit(model="azure/gpt-image-1", prompt="p",
                            image=[first, named(second, "two.jpg")], mask=mask)
    call = fake.calls[-1]
    assert call.path == EDITS_PATH
    assert call.files == [("image[]", "image.png", "image/png", first),
                          ("image[]", "two.jpg", "image/jpeg", second),
                          ("mask", "image.png", "image/png", mask)]
    assert call.body == {"model": "gpt-image-1", "prompt": "p", "n": "1"}


def test_a_list_of_one_stays_image_brackets(azure) -> None:
    fake, server = azure
    source = encoded(32, 32)
    sdk(server).images.edit(model="azure/gpt-image-1", prompt="p",
                            image=[named(source, "one.png")])
    assert fake.calls[-1].files == [("image[]", "one.png", "image/png", source)]


def test_input_fidelity_is_dropped_where_the_model_has_none(azure) -> None:
    fake, server = azure
    fake.deployments["gpt-image-1-mini"] = "gpt-image-1-mini"
    raw = sdk(server).images.with_raw_response.edit(
        model="azure/gpt-image-1-mini", prompt="p", image=named(encoded(32, 32), "a.png"),
        input_fidelity="high")
    assert raw.headers["x-dropped-params"] == "input_fidelity"
    call = fake.calls[-1]
    assert call.path == "/openai/deployments/gpt-image-1-mini/images/edits"
    assert "input_fidelity" not in call.body


def test_streamed_edit_is_relayed_as_image_edit_events(azure) -> None:
    fake, server = azure
    fake.chunk_size = 509  # the upstream's frames arrive cut up
    events = list(sdk(server).images.edit(
        model="azure/gpt-image-1", prompt="p", image=named(encoded(32, 32), "a.png"),
        size="1024x1536", stream=True, partial_images=2))
    assert [type(e) for e in events] == [ImageEditPartialImageEvent] * 2 + [ImageEditCompletedEvent]
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for event in events:
        validate("ImageEditStreamEvent", event.model_dump(exclude_none=True))
    assert decode(events[-1].b64_json).size == (1024, 1536)
    assert events[-1].usage.total_tokens == 284
    call = fake.calls[-1]
    assert call.path == EDITS_PATH
    assert (call.body["stream"], call.body["partial_images"]) == ("true", "2")


def test_content_filter_mid_edit_stream_is_an_error_event(azure) -> None:
    fake, server = azure
    fake.mode = "filter_mid_stream"
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for event in sdk(server).images.edit(model="azure/gpt-image-1", prompt="p",
                                             image=named(encoded(32, 32), "a.png"),
                                             stream=True, partial_images=2):
            seen.append(event.type)
    assert seen == ["image_edit.partial_image"]
    assert caught.value.body["code"] == "content_policy_violation"


def test_json_edit_reaches_azure_as_multipart(azure) -> None:
    fake, server = azure
    source = encoded(48, 48, (200, 10, 10))
    data_url = "data:image/png;base64," + base64.b64encode(source).decode()
    response = httpx.post(f"{server.url}/v1/images/edits", timeout=30, json={
        "model": "azure/gpt-image-1", "prompt": "p", "image": data_url, "quality": "high"})
    assert response.status_code == 200, response.text
    validate("ImagesResponse", response.json())
    assert decode(response.json()["data"][0]["b64_json"]).size == (1024, 1024)
    call = fake.calls[-1]
    assert call.path == EDITS_PATH
    assert call.headers["content-type"].startswith("multipart/form-data")
    assert call.body == {"model": "gpt-image-1", "prompt": "p", "n": "1", "quality": "high"}
    # The type is the sniffed one; the filename is the gateway's own (no upload named it).
    assert [(f[0], f[2], f[3]) for f in call.files] == [("image", "image/png", source)]
