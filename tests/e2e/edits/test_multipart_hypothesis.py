"""Hypothesis over multipart edits sent to a real gateway (``local``, tiny images).

Bodies are built byte by byte, so names, filenames and content types can be anything a client
(or an attacker) might send: any number and order of image, mask and text parts, known
parameters with odd values, unknown fields, duplicates, files where text belongs, images that
are not images. Whatever arrives, the gateway answers 200 (a valid response or stream) or an
OpenAI-shaped 4xx naming the parameter at fault, never a 5xx.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from proxy.app import create_app
from proxy.config import load_config_text
from proxy.upstream.sse import SSEDecoder
from tests.support.schemas import validate
from tests.support.servers import RunningServer, serve

GATEWAY_YAML = """
server:
  base_paths: ["/v1"]
  max_upload_bytes: 1048576
models:
  - name: local
    provider: local
    aliases: [local/painter]
    rules:
      n_max: 2
      default_size: 64x64
      size_range: {multiple_of: 8, min_edge: 64, max_edge: 128, max_pixels: 16384,
                   max_ratio: 2}
default_model: local
"""
BOUNDARY = "fuzz-4c0d1b2e9a7f6e5d"
# Errors about the multipart envelope as a whole (Starlette's parser), which no parameter owns.
ENVELOPE_MESSAGES = ("Invalid multipart", "Missing boundary", "Too many fields",
                     "The Content-Disposition header field")


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningServer]:
    with serve(create_app(load_config_text(GATEWAY_YAML))) as server:
        yield server


# -- what a part may hold ----------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def real_images(draw: st.DrawFn, *, mode: str | None = None,
                size: tuple[int, int] | None = None) -> bytes:
    fmt = draw(st.sampled_from(["PNG", "JPEG", "WEBP"])) if mode is None else "PNG"
    mode = mode or draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "P"]))
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        mode = "RGB"
    width, height = size or (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    colour = draw(st.integers(0, 255))
    return _encode(Image.new(mode, (width, height), colour if mode in ("L", "P") else
                             (colour,) * len(mode)), fmt)


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a", b""]
# Not images, or not images the gateway takes. (Images whose pixel data is cut short, or that
# claim ~400 megapixels, have their own regression tests in test_openapi_fuzz.py.)
not_images = st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC),
                       st.binary(max_size=64))
image_bytes = st.one_of(real_images(), not_images)

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters='\x7f"'), max_size=16)
# Unknown parameters are dropped and listed in the x-dropped-params header (names that are not
# Latin-1 or hold control characters have their own regression test in test_openapi_fuzz.py).
# Raw quotes and backslashes too: Content-Disposition parsing has to survive them.
unknown_names = st.one_of(header_text.filter(bool), st.sampled_from([
    'a"b', "x\\", 'image"', 'mask"; filename="m.png', "image[]x", "n "]))
filenames = st.one_of(st.sampled_from(["image.png", "photo.jpg", "", "upload", "../../etc/passwd",
                                       "a" * 300, "имя.png", "x.gif", 'a"b.png', "c:\\x.png"]),
                      st.text(st.characters(exclude_characters='"\r\n'), max_size=20))
content_types = st.one_of(st.none(), st.sampled_from([
    "image/png", "image/jpeg", "image/webp", "image/gif", "application/octet-stream",
    "text/plain", "text/plain; charset=latin-1", "multipart/mixed", "a/b; x=\"y\"", "",
    "image/png; name=\"mask.png\"",
]))

# Known parameters: values the local model takes, then values it refuses.
KNOWN_VALUES = {
    "n": (["1", "2", " 2 "], ["0", "3", "11", "-1", "1.5", "two", "", "٢"]),
    "size": (["64x64", "128x96", "auto", "96x64"], ["8x8", "4096x4096", "16:9", "64X64", "x"]),
    "quality": (["low", "medium", "high", "auto"], ["hd", "LOW", ""]),
    "background": (["transparent", "opaque", "auto"], ["none"]),
    "output_format": (["png", "jpeg", "webp"], ["gif", "PNG"]),
    "output_compression": (["0", "50", "100"], ["101", "-1", "x"]),
    "response_format": (["b64_json", "url"], ["base64"]),
    "stream": (["true", "false", "TRUE", "False"], ["1", "yes", ""]),
    "partial_images": (["0", "1", "3"], ["4", "-1"]),
    "seed": (["0", "42", "4294967295"], ["4294967296", "-1", "1e3"]),
    "model": (["local", "local/painter"], ["nope", "openai/gpt-image-1", ""]),
    "aspect_ratio": (["1:1", "16:9", "3:2", "auto"], ["0:1", "1:0", "wide", "100000:1"]),
    "aspectRatio": (["1:1", "9:16"], ["x"]),
    "user": (["someone", ""], []),
    "moderation": (["low", "auto"], ["strict"]),
    "style": (["vivid", "natural"], ["bold"]),
    "input_fidelity": (["high", "low"], ["max"]),
    "negative_prompt": (["no cats", ""], []),
    "thinking_level": (["HIGH", "minimal"], ["deep"]),
    "media_resolution": (["LOW"], ["ultra"]),
    "resolution": (["1K"], ["8K"]),
    "metadata": ([], ["{}", "x"]),
    "extra_headers": ([], ["{}", "x"]),
    "response_modalities": ([], ["image", '["image"]']),
    "prompt": (["a red apple", "p" * 40, "\u2028 moon"], ["", "   ", "\u2028"]),
}


def _rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True once in ``one_in`` draws; Hypothesis starts from (and shrinks to) False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def text_values(draw: st.DrawFn, name: str) -> bytes:
    good, bad = KNOWN_VALUES.get(name, ([], []))
    if good and not _rarely(draw, 4):
        value = draw(st.sampled_from(good))
    elif bad and not _rarely(draw, 3):
        value = draw(st.sampled_from(bad))
    else:
        value = draw(st.text(max_size=24))
    raw = value.encode()
    if _rarely(draw, 12):
        raw = draw(st.sampled_from([b"\xff\xfe", b"\x00", b"caf\xe9", raw + b"\r\n"]))
    return raw


@st.composite
def part(draw: st.DrawFn, name: str, body: bytes, *, filename: str | None) -> bytes:
    disposition = b'Content-Disposition: form-data; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename.encode() + b'"'
    headers = [disposition]
    content_type = draw(content_types) if filename is not None else draw(
        st.sampled_from([None, "text/plain", "text/plain; charset=utf-8"]))
    if content_type is not None:
        headers.append(b"Content-Type: " + content_type.encode("latin-1"))
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def _size_of(data: bytes | None) -> tuple[int, int] | None:
    try:
        return Image.open(io.BytesIO(data)).size if data else None
    except Exception:
        return None


@st.composite
def edit_bodies(draw: st.DrawFn) -> bytes:
    """A multipart edit: mostly a sound core (an image, a prompt), then anything around it."""
    parts: list[bytes] = []
    first: bytes | None = None
    images = 1 if not _rarely(draw, 4) else draw(st.integers(0, 5))
    for _ in range(images):
        data = draw(not_images) if _rarely(draw, 8) else draw(real_images())
        first = first or data
        name = draw(st.sampled_from(["image", "image[]", "images", "images[]"]))
        parts.append(draw(part(name, data, filename=draw(filenames))))
    if _rarely(draw, 4):
        size = _size_of(first) if not _rarely(draw, 4) else None
        mask = (draw(image_bytes) if _rarely(draw, 4) else
                draw(real_images(mode="RGBA", size=size or (8, 8))))
        parts.append(draw(part("mask", mask, filename=draw(filenames))))
    if not _rarely(draw, 10):
        prompt = b"a red apple" if not _rarely(draw, 3) else draw(text_values("prompt"))
        parts.append(draw(part("prompt", prompt, filename=None)))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(unknown_names) if _rarely(draw, 4) else draw(
            st.sampled_from(sorted(KNOWN_VALUES)))
        if _rarely(draw, 20):  # a file where text belongs
            parts.append(draw(part(name, draw(st.binary(max_size=16)), filename="x.bin")))
        else:
            parts.append(draw(part(name, draw(text_values(name)), filename=None)))
    order = draw(st.permutations(range(len(parts))))
    delimiter = b"--" + BOUNDARY.encode()
    body = b"".join(delimiter + b"\r\n" + parts[i] + b"\r\n" for i in order)
    return body + delimiter + b"--\r\n"


# -- the property --------------------------------------------------------------------------------


def _check_ok(response: httpx.Response) -> None:
    if response.headers["content-type"].startswith("text/event-stream"):
        decoder = SSEDecoder()
        events = decoder.feed(response.content)
        assert events, "a stream carries at least its completed event"
        for event in events:
            payload = json.loads(event.data)
            if event.event == "error":
                validate("ErrorResponse", payload)
            else:
                validate("ImageEditStreamEvent", payload)
        assert events[-1].event in ("image_edit.completed", "error")
        return
    body = response.json()
    validate("ImagesResponse", body)
    assert body["data"], "at least one image"


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=edit_bodies())
def test_any_multipart_edit_is_answered_200_or_a_4xx_naming_the_parameter(
        gateway: RunningServer, body: bytes) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        response = client.post("/v1/images/edits", content=body, headers={
            "content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code < 500, response.text
    assert "x-request-id" in response.headers
    if response.status_code == 200:
        _check_ok(response)
        return
    assert response.status_code in (400, 404, 413), response.text
    error = response.json()
    validate("ErrorResponse", error)
    message, param = error["error"]["message"], error["error"]["param"]
    if not message.startswith(ENVELOPE_MESSAGES):
        assert param, f"a 4xx names the parameter at fault: {error}"


def test_too_many_image_files_is_a_400_naming_image(gateway: RunningServer) -> None:
    png = _encode(Image.new("RGB", (8, 8)), "PNG")
    files = [("image[]", ("a.png", png, "image/png"))] * 18
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        response = client.post("/v1/images/edits", files=files, data={"prompt": "p"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"
