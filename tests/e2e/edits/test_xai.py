"""Edits on provider ``xai``: the official SDK's multipart becomes xAI's JSON edit (providers.md
§D.1): ``image: {"url": "data:…", "type": "image_url"}`` or ``images: [...]``, no mask."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.support.clients import sdk
from tests.support.fakes.xai import API_KEY, NOT_JSON, FakeXAI
from tests.support.images import decode, encoded, named
from tests.support.schemas import validate
from tests.support.servers import RunningServer, serve
from tests.support.stack import stack_fixture


def ref(data: bytes, mime: str = "image/png") -> dict[str, str]:
    """What xAI must receive for these bytes."""
    return {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}", "type": "image_url"}


def xai_yaml(base_url: str) -> str:
    return f'providers:\n  xai: {{api_key: {API_KEY}, base_url: "{base_url}/v1"}}\n'


# One fake xAI and one gateway for the module; the fake is reset for every test.
xai = stack_fixture(FakeXAI, xai_yaml)


def expect_error(server: RunningServer, **kwargs) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.edit(prompt="p", **kwargs)
    validate("ErrorResponse", caught.value.response.json())
    return caught.value


def test_single_image_is_an_image_object_with_the_exact_bytes(xai) -> None:
    fake, server = xai
    source = encoded(96, 64)
    raw = sdk(server).images.with_raw_response.edit(
        model="xai/grok-imagine-image", prompt="make it snow", image=named(source, "a.png"))
    result = raw.parse()
    validate("ImagesResponse", raw.http_response.json())
    assert "x-dropped-params" not in raw.headers
    image = decode(result.data[0].b64_json)
    # xAI answers JPEG; the gateway hands on PNG, in the source's aspect ratio.
    assert (image.format, image.size) == ("PNG", (1024, 683))
    assert result.data[0].revised_prompt == "A vivid scene: make it snow"

    call = fake.calls[-1]
    assert call.path == "/v1/images/edits"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.body == {"model": "grok-imagine-image", "prompt": "make it snow", "n": 1,
                         "response_format": "b64_json", "image": ref(source)}
    assert call.images == [source]


def test_two_images_are_an_images_array_each_with_its_own_type(xai) -> None:
    fake, server = xai
    first, second = encoded(64, 64), encoded(32, 48, (9, 9, 9), "JPEG")
    # Raw bytes arrive as application/octet-stream: the data URL's type is sniffed.
    sdk(server).images.edit(model="xai/grok-imagine-image", prompt="p",
                            image=[first, named(second, "b.png")])
    call = fake.calls[-1]
    assert "image" not in call.body
    assert call.body["images"] == [ref(first), ref(second, "image/jpeg")]
    assert call.images == [first, second]


def test_a_list_of_one_is_sent_as_images(xai) -> None:
    fake, server = xai
    source = encoded(32, 32, kind="WEBP")
    sdk(server).images.edit(model="xai/grok-imagine-image", prompt="p", image=[source])
    assert fake.calls[-1].body["images"] == [ref(source, "image/webp")]
    assert "image" not in fake.calls[-1].body


def test_mask_is_dropped_and_reported(xai) -> None:
    fake, server = xai
    source = encoded(64, 64)
    mask = encoded(64, 64, (0, 0, 0, 0), mode="RGBA")
    raw = sdk(server).images.with_raw_response.edit(
        model="xai/grok-imagine-image", prompt="p", image=named(source, "a.png"),
        mask=named(mask, "mask.png"))
    assert raw.headers["x-dropped-params"] == "mask"
    assert decode(raw.parse().data[0].b64_json).size == (1024, 1024)
    call = fake.calls[-1]
    assert "mask" not in call.body and call.body["image"] == ref(source)
    assert call.images == [source], "the mask is not smuggled in as an image"


def test_too_many_images_is_refused_before_xai_is_called(xai) -> None:
    fake, server = xai
    four = [encoded(16, 16, (i, i, i)) for i in range(4)]
    error = expect_error(server, model="xai/grok-imagine-image", image=four)
    assert (error.param, error.code) == ("image", "too_many_images")
    assert "at most 3" in error.message
    error = expect_error(server, model="xai/grok-imagine-image-2.0", image=four + four[:2])
    assert (error.param, error.code) == ("image", "too_many_images")
    assert "at most 5" in error.message
    assert not fake.calls
    # grok-imagine-image-2.0 takes five.
    sdk(server).images.edit(model="xai/grok-imagine-image-2.0", prompt="p",
                            image=four + four[:1])
    assert fake.calls[-1].images == four + four[:1]


def test_the_legacy_model_cannot_edit(xai) -> None:
    fake, server = xai
    error = expect_error(server, model="grok-2-image", image=named(encoded(16, 16), "a.png"))
    assert (error.param, error.code) == ("model", "model_cannot_edit")
    assert not fake.calls


def test_streamed_edit_is_emulated_with_an_image_edit_event(xai) -> None:
    fake, server = xai
    events = list(sdk(server).images.edit(model="xai/grok-imagine-image", prompt="p",
                                          image=named(encoded(32, 32), "a.png"), stream=True,
                                          partial_images=1))
    assert [e.type for e in events] == ["image_edit.completed"]
    validate("ImageEditStreamEvent", events[0].model_dump(exclude_none=True))
    assert "stream" not in fake.calls[-1].body and fake.calls[-1].path == "/v1/images/edits"


def test_json_edit_reaches_xai_as_json(xai) -> None:
    fake, server = xai
    source = encoded(48, 48, (200, 10, 10))
    data_url = "data:image/png;base64," + base64.b64encode(source).decode()
    response = httpx.post(f"{server.url}/v1/images/edits", timeout=30, json={
        "model": "xai/grok-imagine-image", "prompt": "p", "image": data_url})
    assert response.status_code == 200, response.text
    validate("ImagesResponse", response.json())
    call = fake.calls[-1]
    assert call.body["image"] == ref(source)
    assert call.images == [source]


def test_the_fake_refuses_multipart_as_xai_does() -> None:
    """The fake is strict: the SDK's multipart sent straight to xAI is a 415 in xAI's shape."""
    fake = FakeXAI()
    with serve(fake.app) as upstream:
        response = httpx.post(f"{upstream.url}/v1/images/edits", timeout=30,
                              headers={"authorization": f"Bearer {API_KEY}"},
                              data={"model": "grok-imagine-image", "prompt": "p"},
                              files={"image": ("a.png", encoded(8, 8), "image/png")})
    assert response.status_code == 415
    assert response.json() == {"code": "Client specified an invalid argument",
                               "error": NOT_JSON}
