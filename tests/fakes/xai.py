"""A fake xAI image API: ``POST /v1/images/generations`` as ``providers.md`` §D describes it.

It refuses what xAI refuses, in xAI's error shape ``{"code": "<sentence>", "error": "<message>"}``:
any argument it does not take (``size``, ``style``, ``quality`` except on grok-imagine-image-2.0…)
is a 400 ``Argument not supported: <name>``, a wrong key a 400 too (xAI's real answer). Images are
real JPEGs whose size follows ``aspect_ratio`` and ``resolution`` (1k: long edge 1024, 2k: 2048;
grok-2-image: 1024x768), returned as ``data:image/jpeg;base64,…`` or as a temporary URL. Modes:
``ok``; ``moderated`` (the 400 xAI sends when moderation rejects the image); ``status`` (any status,
body and headers). ``withheld`` images (the first ones) come back with HTTP 200 as xAI flags them:
``respect_moderation: false`` and no payload.
"""

from __future__ import annotations

import base64
import io
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


def xai_error(status: int, message: str, code: str = INVALID, **extra: Any) -> Response:
    body = {"code": code, "error": message, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def jpeg_b64(width: int, height: int, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def image_size(body: dict[str, Any]) -> tuple[int, int]:
    if body["model"].startswith("grok-2-image"):
        return 1024, 768
    long_edge = 2048 if body.get("resolution") == "2k" else 1024
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


@dataclass
class FakeXAI:
    mode: str = "ok"  # "ok" | "moderated" | "status"
    withheld: int = 0
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
        ])

    async def _generations(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.calls.append(XAICall(request.url.path, dict(request.headers), body))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return xai_error(400, "Incorrect API key provided: xa***ey. You can obtain an API "
                             "key from https://console.x.ai.")
        allowed = _ARGUMENTS | ({"quality"} if body.get("model") == "grok-imagine-image-2.0"
                                else set())
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
        width, height = image_size(body)
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
        return Response(orjson.dumps({"data": data, "usage": usage}),
                        media_type="application/json")
