"""Edits on provider ``comfyui``: the official SDK's ``images.edit`` through a real gateway, and a
fake ComfyUI that takes ``/upload/image`` and renders edit graphs from what was uploaded."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import httpx
import openai
import pytest
from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent
from PIL import Image, ImageChops

from tests.support.clients import sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.images import decode, encoded, half_transparent, named
from tests.support.paths import COMFYUI_WORKFLOWS
from tests.support.schemas import validate
from tests.support.stack import stack_fixture


def inputs(comfy: FakeComfyUI, job_id: str, node: str) -> dict:
    return comfy.prompt_of(job_id).workflow[node]["inputs"]


def edit_workflow(extra: str) -> Callable[[str], str]:
    """Gateway YAML serving MODEL with these edit settings (indented as the model's own)."""
    return lambda url: comfy_yaml(url, extra=extra)


# A fresh fake ComfyUI and gateway for each test: image to image, and inpainting.
img2img = stack_fixture(
    lambda: FakeComfyUI(step_delay=0.005),
    edit_workflow("    edit_workflow: sdxl_image_to_image\n    edit_denoise: 0.6"),
    scope="function")


inpaint = stack_fixture(lambda: FakeComfyUI(step_delay=0.005),
                        edit_workflow("    edit_workflow: sdxl_inpaint"), scope="function")


# -- through the gateway, with the official SDK ------------------------------------------------


def test_image_to_image_uploads_the_image_and_injects_its_name(img2img) -> None:
    fake, server = img2img
    source = encoded(203, 117, (20, 160, 220), kind="JPEG")
    raw = sdk(server).images.with_raw_response.edit(
        model=MODEL, prompt="the same bay at night", image=named(source, "bay.jpg"), n=2,
        extra_body={"seed": 7})
    result = raw.parse()
    job_id = raw.headers["x-request-id"]

    (upload,) = fake.uploads
    assert upload.data == source, "the image is uploaded byte for byte"
    assert (upload.name, upload.subfolder, upload.type, upload.overwrite) == (
        f"{job_id}.jpg", "image-proxy", "input", "true")
    assert upload.content_type == "image/jpeg"
    assert inputs(fake, job_id, "10")["image"] == f"image-proxy/{job_id}.jpg"
    sampler = inputs(fake, job_id, "3")
    assert (sampler["denoise"], sampler["seed"]) == (0.6, 7), "edit_denoise is injected"
    assert inputs(fake, job_id, "6")["text"] == "the same bay at night"
    # No size: the input image's, in steps of 8.
    assert {k: inputs(fake, job_id, "12")[k] for k in ("width", "height")} == {
        "width": 200, "height": 120}
    assert inputs(fake, job_id, "15")["amount"] == 2, "n is the latent batch"

    body = raw.http_response.json()
    validate("ImagesResponse", body)
    images = [decode(d.b64_json) for d in result.data]
    assert [(i.format, i.size) for i in images] == [("PNG", (200, 120))] * 2
    assert body["size"] == "200x120"
    # The fake renders from the upload: blended toward its paint by denoise 0.6, not blank.
    original = Image.open(io.BytesIO(source)).convert("RGB").resize((200, 120))
    assert ImageChops.difference(images[0].convert("RGB"), original).getbbox() is not None


def test_inpaint_uploads_the_mask_unchanged_and_repaints_its_transparent_area(inpaint) -> None:
    fake, server = inpaint
    source = encoded(128, 96, (10, 200, 60))
    mask = half_transparent(128, 96)
    raw = sdk(server).images.with_raw_response.edit(
        model=MODEL, prompt="a red door", image=named(source, "wall.png"),
        mask=named(mask, "mask.png"), size="256x192")
    result = raw.parse()
    job_id = raw.headers["x-request-id"]

    image_upload, mask_upload = fake.uploads
    assert (image_upload.name, image_upload.data) == (f"{job_id}.png", source)
    # ComfyUI's mask from alpha is 1 - alpha: transparent = repaint, as in OpenAI. No inversion.
    assert (mask_upload.name, mask_upload.data) == (f"{job_id}-mask.png", mask)
    assert inputs(fake, job_id, "10")["image"] == f"image-proxy/{job_id}.png"
    assert inputs(fake, job_id, "11") == {"image": f"image-proxy/{job_id}-mask.png",
                                          "channel": "alpha"}
    assert inputs(fake, job_id, "3")["denoise"] == 1.0, "the built-in's own edit_denoise"
    assert {k: inputs(fake, job_id, "12")[k] for k in ("width", "height")} == {
        "width": 256, "height": 192}

    edited = decode(result.data[0].b64_json).convert("RGB")
    assert edited.size == (256, 192)
    # The mask is scaled with the image (bilinear, as ComfyUI does): skip the seam.
    left, right = (0, 0, 120, 192), (136, 0, 256, 192)
    kept = Image.new("RGB", (120, 192), (10, 200, 60))
    assert ImageChops.difference(edited.crop(left), kept).getbbox() is None, "opaque: kept"
    assert ImageChops.difference(edited.crop(right), kept).getbbox() is not None, "repainted"


def test_inpaint_without_mask_uses_the_images_transparency(inpaint) -> None:
    fake, server = inpaint
    source = half_transparent(64, 64, (10, 200, 60))
    raw = sdk(server).images.with_raw_response.edit(
        model=MODEL, prompt="p", image=named(source, "cut.png"))
    job_id = raw.headers["x-request-id"]
    (upload,) = fake.uploads
    assert upload.data == source
    assert inputs(fake, job_id, "10")["image"] == inputs(fake, job_id, "11")["image"] == (
        f"image-proxy/{job_id}.png")
    edited = decode(raw.parse().data[0].b64_json).convert("RGB")
    assert edited.getpixel((10, 32)) == (10, 200, 60) and edited.getpixel((54, 32)) != (
        10, 200, 60)


def test_streaming_edit_sends_previews_as_image_edit_partials(img2img) -> None:
    fake, server = img2img
    events = list(sdk(server).images.edit(
        model=MODEL, prompt="p", image=named(encoded(96, 64, (1, 2, 3)), "a.png"),
        stream=True, partial_images=2))
    assert [type(e) for e in events] == [ImageEditPartialImageEvent] * 2 + [ImageEditCompletedEvent]
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for event in events:
        validate("ImageEditStreamEvent", event.model_dump(exclude_none=True))
    assert decode(events[-1].b64_json).size == (96, 64)
    assert len(fake.uploads) == 1


def test_a_model_without_edit_workflow_refuses_edits_naming_model(comfy) -> None:
    fake, server = comfy
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.edit(model=MODEL, prompt="p",
                                image=named(encoded(64, 64, (1, 2, 3)), "a.png"))
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert (error.status_code, error.param, error.code) == (400, "model", "model_cannot_edit")
    assert "cannot edit images" in error.message
    assert not fake.uploads and not fake.prompts
    card = sdk(server).models.retrieve(MODEL)
    assert card.model_extra["capabilities"]["edits"] is False, "GET /v1/models says so too"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upload_comfyui_fails_is_a_502_before_anything_is_queued(img2img, stream) -> None:
    fake, server = img2img
    fake.upload_status = 500
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(server).images.edit(model=MODEL, prompt="p", stream=stream,
                                image=named(encoded(64, 64, (1, 2, 3)), "a.png"))
    error = caught.value
    assert error.status_code == 502 and error.code == "upstream_error"
    assert "HTTP 500" in error.message and "upload" in error.message
    assert not fake.prompts and not fake.interrupts


def test_mask_and_image_refusals_name_the_parameter(img2img, inpaint) -> None:
    image = encoded(64, 64, (1, 2, 3))
    cases = [
        # The image-to-image workflow has no mask input: a 400, never a silent full repaint.
        (img2img, {"mask": named(half_transparent(64, 64), "m.png")},
         ("mask", "unsupported_parameter")),
        # An inpaint workflow with neither a mask nor transparency would change nothing.
        (inpaint, {}, ("mask", "missing_required_parameter")),
        (inpaint, {"image": [named(image, "a.png"), named(image, "b.png")]},
         ("image", "too_many_images")),
    ]
    for (fake, server), extra, expected in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(server).images.edit(**{"model": MODEL, "prompt": "p",
                                       "image": named(image, "a.png"), **extra})
        assert (caught.value.param, caught.value.code) == expected
        assert not fake.uploads and not fake.prompts


# -- the fake speaks ComfyUI's upload protocol ---------------------------------------------------


def test_fake_upload_and_loadimage_validation(fake_comfyui) -> None:
    fake, url = fake_comfyui
    data = encoded(16, 16, (5, 5, 5))

    def upload(content: bytes, **form: str) -> dict:
        response = httpx.post(f"{url}/upload/image", data=form, timeout=5,
                              files={"image": ("x.png", content, "image/png")})
        assert response.status_code == 200
        return response.json()

    assert upload(data) == {"name": "x.png", "subfolder": "", "type": "input"}
    assert upload(data)["name"] == "x.png", "same bytes: no copy"
    assert upload(data + b"\0")["name"] == "x (1).png", "a clash is renamed"
    assert upload(b"new", overwrite="true")["name"] == "x.png"
    assert upload(data, subfolder="sub", type="input") == {
        "name": "x.png", "subfolder": "sub", "type": "input"}
    assert fake.files[("input", "", "x.png")] == b"new"

    graph = json.loads((COMFYUI_WORKFLOWS / "sdxl_image_to_image.json").read_text())
    graph["10"]["inputs"]["image"] = "sub/x.png"
    prompt = httpx.post(f"{url}/prompt", json={"prompt": graph}, timeout=5)
    assert prompt.status_code == 200
    graph["10"]["inputs"]["image"] = "missing.png"
    refused = httpx.post(f"{url}/prompt", json={"prompt": graph}, timeout=5)
    body = refused.json()
    assert refused.status_code == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["10"]["errors"][0]["type"] == "custom_validation_failed"
    assert body["node_errors"]["10"]["errors"][0]["details"] == (
        "image - Invalid image file: missing.png")
