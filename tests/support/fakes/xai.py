"""A fake xAI image API: ``POST /v1/images/generations`` as ``providers.md`` §D describes it.

It refuses what xAI refuses, in xAI's error shape ``{"code": "<sentence>", "error": "<message>"}``:
any argument it does not take (``size``, ``style``, ``quality`` except on grok-imagine-image-2.0…)
is a 400 ``Argument not supported: <name>``, a wrong key a 400 too (xAI's real answer). Images are
real JPEGs whose size follows ``aspect_ratio`` and ``resolution`` (1k: long edge 1024, 2k: 2048;
grok-2-image: 1024x768), returned as ``data:image/jpeg;base64,…`` or as a temporary URL. Modes:
``ok``; ``moderated`` (the 400 xAI sends when moderation rejects the image); ``status`` (any status,
body and headers). ``withheld`` images (the first ones) come back with HTTP 200 as xAI flags them:
``respect_moderation: false`` and no payload. ``reports_cost=False``: answers carry no ``usage``
(xAI does not always state its charge).

Edits (§D.1): ``POST /v1/images/edits`` takes JSON only (multipart is refused with a 415, as xAI
answers the OpenAI SDK's ``images.edit()``), with one source image as ``image: {"url": …,
"type": "image_url"}`` or several as ``images: [...]`` (at most 3; 5 on grok-imagine-image-2.0),
never both, and no ``mask``. The fake takes ``data:image/png|jpeg|webp;base64,…`` URLs whose
bytes must really be such an image, and records the decoded bytes in ``XAICall.images``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API_KEY = "xai-fake-upstream-key"
INVALID = "Client specified an invalid argument"
MODERATED = "Generated image rejected by content moderation."
RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9",
          "1:2", "2:1", "21:9", "5:2", "auto")
_ARGUMENTS = {"model", "prompt", "n", "response_format", "aspect_ratio", "resolution", "user"}
# 2e8 ticks of 1e-10 USD: $0.02 an image.
TICKS_PER_IMAGE = 200_000_000
# Models that edit, and how many source images each takes.
EDIT_LIMITS = {"grok-imagine-image": 3, "grok-imagine-image-2.0": 5}
# [?: the status is reported by third parties; the wording is the fake's]
NOT_JSON = "Unsupported content type: image edits take application/json."
_DATA_URL = re.compile(r"^data:(image/(?:png|jpeg|webp));base64,(.+)$", re.DOTALL)
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def xai_error(status: int, message: str, code: str = INVALID, **extra: Any) -> Response:
    body = {"code": code, "error": message, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def jpeg_b64(width: int, height: int, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def image_size(body: dict[str, Any],
               source: tuple[int, int] | None = None) -> tuple[int, int]:
    if body["model"].startswith("grok-2-image"):
        return 1024, 768
    long_edge = 2048 if body.get("resolution") == "2k" else 1024
    if source is not None and body.get("aspect_ratio") in (None, "auto"):
        width, height = float(source[0]), float(source[1])
    else:
        width, height = (float(v) for v in (body.get("aspect_ratio") or "1:1").replace(
            "auto", "1:1").split(":"))
    if width >= height:
        return long_edge, round(long_edge * height / width)
    return round(long_edge * width / height), long_edge


@dataclass
class XAICall:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # Edits: the decoded bytes of each source image, in order.
    images: list[bytes] = field(default_factory=list)


@dataclass
class FakeXAI:
    mode: str = "ok"  # "ok" | "moderated" | "status"
    withheld: int = 0
    reports_cost: bool = True
    status: int = 500
    status_body: bytes = b""
    status_headers: dict[str, str] = field(default_factory=dict)
    calls: list[XAICall] = field(default_factory=list)
    # The base64 of every image sent, without the data-URL prefix (to compare with what the
    # gateway hands on).
    sent_b64: list[str] = field(default_factory=list)

    def reset(self) -> None:
        """Back to a fresh fake (lets one server serve many tests)."""
        for spec in fields(self):
            setattr(self, spec.name, getattr(type(self)(), spec.name))

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/images/generations", self._generations, methods=["POST"]),
            Route("/v1/images/edits", self._edits, methods=["POST"]),
        ])

    async def _generations(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.calls.append(XAICall(request.url.path, dict(request.headers), body))
        return self._answer(request, body, set())

    async def _edits(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            self.calls.append(XAICall(request.url.path, dict(request.headers), {}))
            return xai_error(415, NOT_JSON)
        body = orjson.loads(await request.body())
        call = XAICall(request.url.path, dict(request.headers), body)
        self.calls.append(call)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return self._answer(request, body, set())  # the wrong-key answer
        limit = EDIT_LIMITS.get(str(body.get("model")))
        if limit is None:
            return xai_error(400, f"Model {body.get('model')} does not support image editing.")
        if "image" in body and "images" in body:
            return xai_error(400, "Give either 'image' or 'images', not both.")
        refs = [body["image"]] if "image" in body else body.get("images")
        if not isinstance(refs, list) or not refs:
            return xai_error(400, "Field required: image")
        if len(refs) > limit:
            return xai_error(400, f"Too many images: at most {limit} source images are "
                             f"supported, got {len(refs)}.")
        for index, ref in enumerate(refs):
            data = _source_image(ref)
            if isinstance(data, str):
                return xai_error(400, f"Invalid image {index}: {data}")
            call.images.append(data)
        with Image.open(io.BytesIO(call.images[0])) as first:
            source = first.size
        return self._answer(request, body, {"image", "images"}, source)

    def _answer(self, request: Request, body: dict[str, Any], extra: set[str],
                source: tuple[int, int] | None = None) -> Response:
        """Generations and edits alike, once the edit's images are checked. Without an
        ``aspect_ratio`` an edit keeps the first source image's [3p]."""
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return xai_error(400, "Incorrect API key provided: xa***ey. You can obtain an API "
                             "key from https://console.x.ai.")
        allowed = _ARGUMENTS | extra | ({"quality"} if body.get("model") ==
                                        "grok-imagine-image-2.0" else set())
        for name in body:
            if name not in allowed:
                return xai_error(400, f"Argument not supported: {name}")
        if body.get("aspect_ratio", "1:1") not in RATIOS:
            return xai_error(400, f"Invalid aspect ratio: {body['aspect_ratio']}")
        if body.get("resolution", "1k") not in ("1k", "2k"):
            return xai_error(400, f"Invalid resolution: {body['resolution']}")
        if self.mode == "status":
            return Response(self.status_body, status_code=self.status,
                            headers=self.status_headers, media_type="application/json")
        n = body.get("n", 1)
        usage = {"cost_in_usd_ticks": TICKS_PER_IMAGE * n}
        if self.mode == "moderated":
            return xai_error(400, MODERATED, usage=usage)
        width, height = image_size(body, source)
        data: list[dict[str, Any]] = [
            {"url": "", "revised_prompt": "", "respect_moderation": False}
        ] * min(self.withheld, n)
        for index in range(len(data), n):
            item: dict[str, Any] = {"revised_prompt": f"A vivid scene: {body['prompt']}",
                                    "respect_moderation": True}
            if body.get("response_format") == "b64_json":
                b64 = jpeg_b64(width, height, (30 + 40 * index, 140, 90))
                self.sent_b64.append(b64)
                item["b64_json"] = f"data:image/jpeg;base64,{b64}"
            else:
                item["url"] = f"https://imgen.x.ai/xai-imgen/xai-tmp-imgen-{uuid.uuid4()}.jpeg"
            data.append(item)
        answer = {"data": data, "usage": usage} if self.reports_cost else {"data": data}
        return Response(orjson.dumps(answer), media_type="application/json")


def _source_image(ref: Any) -> bytes | str:
    """The bytes of ``{"url": "data:image/…;base64,…", "type": "image_url"}``, or what is wrong
    with it (http(s) URLs are not fetched by the fake: the gateway sends data URLs)."""
    if not isinstance(ref, dict) or set(ref) != {"url", "type"} or ref["type"] != "image_url":
        return 'expected {"url": ..., "type": "image_url"}.'
    match = _DATA_URL.match(str(ref["url"]))
    if match is None:
        return "expected a data:image/png|jpeg|webp;base64 URL."
    try:
        data = base64.b64decode(match.group(2), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind = image.format
    except (binascii.Error, ValueError, OSError):
        return "the data URL does not hold a readable image."
    if kind != _PIL_FORMATS[match.group(1)]:
        return f"the data URL says {match.group(1)} but holds {kind}."
    return data
