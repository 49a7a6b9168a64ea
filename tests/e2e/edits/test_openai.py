"""``POST /v1/images/edits`` as the official SDK sends it (multipart), against ``local`` and a
fake OpenAI upstream that checks the multipart it receives field by field."""

from __future__ import annotations

import io

import openai
import pytest
from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent
from PIL import Image, ImageChops

from tests.support.clients import async_sdk, sdk
from tests.support.images import decode, encoded, half_transparent, named
from tests.support.schemas import validate

# -- local: a real edit ----------------------------------------------------------------------


def test_local_edit_keeps_the_masked_area_and_repaints_the_rest(local_gateway) -> None:
    source = encoded(256, 192, (10, 200, 60))
    result = sdk(local_gateway).images.edit(
        model="local", prompt="a red apple", image=named(source, "photo.png"),
        mask=named(half_transparent(256, 192), "mask.png"))
    edited = decode(result.data[0].b64_json).convert("RGB")
    original = Image.open(io.BytesIO(source)).convert("RGB")
    assert edited.size == (256, 192), "no size: the input image's"
    left = (0, 0, 128, 192)
    assert ImageChops.difference(edited.crop(left), original.crop(left)).getbbox() is None
    right = (128, 0, 256, 192)
    assert ImageChops.difference(edited.crop(right), original.crop(right)).getbbox() is not None
    assert result.size == "256x192"


def test_local_edit_without_mask_repaints_the_whole_image(local_gateway) -> None:
    source = encoded(128, 128, (250, 250, 250))
    # Raw bytes: the SDK names the part "upload" with application/octet-stream.
    result = sdk(local_gateway).images.edit(model="local", prompt="a blue ocean",
                                            image=source, size="256x256")
    edited = decode(result.data[0].b64_json)
    assert edited.size == (256, 256)
    assert edited.convert("RGB").getpixel((5, 5)) != (250, 250, 250)


def test_local_edit_accepts_a_list_of_images(local_gateway) -> None:
    result = sdk(local_gateway).images.edit(
        model="local", prompt="p",
        image=[named(encoded(64, 64), "a.png"), named(encoded(64, 64), "b.png")])
    assert decode(result.data[0].b64_json).size == (64, 64)


def test_local_edit_streams_image_edit_events(local_gateway) -> None:
    stream = sdk(local_gateway).images.edit(model="local", prompt="a green tree",
                                            image=named(encoded(128, 128), "a.png"),
                                            stream=True, partial_images=2)
    events = list(stream)
    assert [type(e) for e in events] == [ImageEditPartialImageEvent] * 2 + [ImageEditCompletedEvent]
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    for event in events:
        validate("ImageEditStreamEvent", event.model_dump(exclude_none=True))


async def test_async_sdk_edit(local_gateway) -> None:
    result = await async_sdk(local_gateway).images.edit(
        model="local", prompt="p", image=named(encoded(96, 64), "a.png"))
    assert decode(result.data[0].b64_json).size == (96, 64)


# -- openai: the multipart is forwarded faithfully ------------------------------------------


def test_single_file_is_forwarded_as_image(openai_gateway) -> None:
    fake, server = openai_gateway
    source = encoded(64, 64)
    result = sdk(server).images.edit(model="openai/gpt-image-1", prompt="make it red",
                                     image=named(source, "photo.png"), n=2, size="1024x1024",
                                     quality="low", input_fidelity="high")
    assert len(result.data) == 2
    sent = fake.requests[-1]
    assert sent.body == {"model": "gpt-image-1", "prompt": "make it red", "n": "2",
                         "size": "1024x1024", "quality": "low", "input_fidelity": "high"}
    assert sent.files == [("image", "photo.png", "image/png", source)]
    assert sent.headers["content-type"].startswith("multipart/form-data")


def test_list_and_mask_and_raw_bytes(openai_gateway) -> None:
    fake, server = openai_gateway
    first, second, mask = encoded(64, 64), encoded(64, 64, (1, 2, 3)), half_transparent(64, 64)
    sdk(server).images.edit(model="openai/gpt-image-1", prompt="p",
                            image=[first, named(second, "two.png")], mask=mask)
    sent = fake.requests[-1]
    # Raw bytes reach us as application/octet-stream named "upload": the type is sniffed, so
    # the upstream (which refuses octet-stream) gets image/png.
    assert [(f[0], f[2], f[3]) for f in sent.files] == [
        ("image[]", "image/png", first), ("image[]", "image/png", second),
        ("mask", "image/png", mask)]
    assert sent.files[1][1] == "two.png"


def test_list_of_one_stays_a_list(openai_gateway) -> None:
    fake, server = openai_gateway
    sdk(server).images.edit(model="openai/gpt-image-1", prompt="p", image=[encoded(32, 32)])
    assert [f[0] for f in fake.requests[-1].files] == ["image[]"]


def test_streamed_edit_is_relayed(openai_gateway) -> None:
    fake, server = openai_gateway
    events = list(sdk(server).images.edit(model="openai/gpt-image-1", prompt="p",
                                          image=named(encoded(32, 32), "a.png"), stream=True,
                                          partial_images=1))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert fake.requests[-1].body["stream"] == "true"
    assert fake.requests[-1].body["partial_images"] == "1"


# -- errors ------------------------------------------------------------------------------------


def expect(server, exc_type, **kwargs) -> openai.APIStatusError:
    with pytest.raises(exc_type) as caught:
        sdk(server).images.edit(prompt="p", **kwargs)
    validate("ErrorResponse", caught.value.response.json())
    return caught.value


def test_edit_errors(local_gateway, openai_gateway) -> None:
    _, server = openai_gateway
    one = named(encoded(64, 64), "a.png")
    error = expect(server, openai.BadRequestError, model="openai/dall-e-3", image=one)
    assert (error.param, error.code) == ("model", "model_cannot_edit")
    error = expect(local_gateway, openai.BadRequestError, model="local",
                   image=[encoded(16, 16)] * 17)
    assert (error.param, error.code) == ("image", "too_many_images")
    error = expect(local_gateway, openai.BadRequestError, model="local",
                   image=named(b"this is not an image", "a.png"))
    assert (error.param, error.code) == ("image", "invalid_image")
    error = expect(local_gateway, openai.BadRequestError, model="local",
                   image=named(encoded(64, 64), "a.png"),
                   mask=named(half_transparent(32, 32), "m.png"))
    assert (error.param, error.code) == ("mask", "mask_size_mismatch")
    error = expect(local_gateway, openai.BadRequestError, model="local",
                   image=named(encoded(64, 64), "a.png"), mask=named(encoded(64, 64), "m.png"))
    assert (error.param, error.code) == ("mask", "invalid_mask"), "no alpha channel"


def test_file_larger_than_50_mb_is_413(local_gateway) -> None:
    huge = encoded(8, 8) + b"\0" * (50 * 1024 * 1024)
    error = expect(local_gateway, openai.APIStatusError, model="local", image=huge)
    assert error.status_code == 413 and error.code == "image_too_large"
