"""A fake OpenAI Images API: the real wire format (``../shared/reference/openai-images.md``).

It checks what real OpenAI checks that matters to us (bearer key, streaming only with n=1,
``response_format`` refused for GPT image models), records every request, and can misbehave on
demand: any HTTP status, garbage bodies, hangs before headers or mid-stream, dropped connections.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-fake-upstream-key"


def openai_models_yaml(base_url: str, *, first_byte: float = 600.0, total: float = 900.0,
                       expected_seconds: float | None = None) -> str:
    """Gateway config for models behind the fake OpenAI upstream at ``base_url`` (``.../v1``);
    ``expected_seconds`` seeds gpt-image-1's progress estimate."""
    expected = f"\n    expected_seconds: {expected_seconds}" if expected_seconds else ""
    return f"""
models:
  - name: openai/gpt-image-1
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
    timeout: {{connect: 5, first_byte: {first_byte}, total: {total}}}{expected}
  - name: openai/gpt-image-2
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
  - name: openai/dall-e-3
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
  - name: compatible/flux
    provider: openai
    upstream_model: flux-dev
    base_url: {base_url}
    api_key: {API_KEY}
  - name: openai/bad-key
    provider: openai
    upstream_model: gpt-image-1
    base_url: {base_url}
    api_key: sk-wrong
"""


def png_b64(width: int, height: int, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def openai_error(status: int, message: str, *, type: str, code: str | None = None,
                 param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]
    # Multipart edits: every file part as (field, filename, content type, bytes).
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)


@dataclass
class FakeOpenAI:
    # "ok" | "status" | "garbage" | "hang" | "stall_mid_stream" | "drop_mid_stream" | "no_data"
    # | "truncated" (the image's base64 cut short)
    mode: str = "ok"
    # With mode "status": answer that status only this many times, then behave ("ok").
    status_times: int | None = None
    status: int = 500
    status_body: bytes = b""
    status_headers: dict[str, str] = field(default_factory=dict)
    # Stream frames are cut into chunks of this many bytes (exercises the relay's reassembly).
    chunk_size: int = 0
    line_end: str = "\n"
    # Seconds between stream events (lets tests see partials arrive one by one).
    event_gap: float = 0.0
    # Seconds the non-streamed answer takes (the real API sends nothing until the image is done).
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    # Set just before the completed frame leaves (lets tests prove nothing is buffered).
    completed_sent: bool = False
    # A stream whose client went away before its last frame (the relay closed it).
    stream_abandoned: bool = False
    # Generation requests being answered right now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/images/generations", self._generations, methods=["POST"]),
            Route("/v1/images/edits", self._edits, methods=["POST"]),
        ])

    async def _edits(self, request: Request) -> Response:
        """Multipart as OpenAI reads it: scalars are text parts, images are ``image`` or
        ``image[]`` file parts with an image mimetype (octet-stream is refused), ``mask``."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return openai_error(400, "Edits must be multipart/form-data.",
                                type="invalid_request_error")
        form = await request.form()
        body: dict[str, Any] = {}
        files = []
        for name, value in form.multi_items():
            if isinstance(value, str):
                body[name] = value
                continue
            data = await value.read()
            mime = value.content_type or ""
            if mime not in ("image/png", "image/jpeg", "image/webp"):
                return openai_error(400, f"Invalid file '{name}': unsupported mimetype "
                                    f"('{mime}'). Supported file formats are 'image/jpeg', "
                                    "'image/png', and 'image/webp'.",
                                    type="invalid_request_error", param=name)
            files.append((name, value.filename or "", mime, data))
        self.requests.append(Recorded(dict(request.headers), body, files))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return openai_error(401, "Incorrect API key provided.",
                                type="invalid_request_error", code="invalid_api_key")
        if not any(name in ("image", "image[]") for name, *_ in files):
            return openai_error(400, "Missing required parameter: 'image'.",
                                type="invalid_request_error", param="image")
        n = int(body.get("n", "1"))
        if body.get("stream") == "true":
            return StreamingResponse(self._stream(body, prefix="image_edit"),
                                     media_type="text/event-stream")
        return self._edit_answer(body, n)

    def _edit_answer(self, body: dict[str, Any], n: int) -> Response:
        """A non-streamed edit's answer (a fake may send it otherwise)."""
        return Response(orjson.dumps(self._images_response(body, n)),
                        media_type="application/json")

    async def _generations(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request)
        finally:
            self.in_flight -= 1

    async def _generate(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return openai_error(400, "We could not parse the JSON body of your request.",
                                type="invalid_request_error")
        self.requests.append(Recorded(dict(request.headers), body))

        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return openai_error(401, "Incorrect API key provided: sk-****. You can find your API "
                                "key at https://platform.openai.com/account/api-keys.",
                                type="invalid_request_error", code="invalid_api_key")
        if self.mode == "status" and self.status_times != 0:
            if self.status_times is not None:
                self.status_times -= 1
            return Response(self.status_body, status_code=self.status,
                            headers=self.status_headers, media_type="application/json")
        if self.mode == "garbage":
            return Response(b"<html>502 Bad Gateway</html>", media_type="application/json")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if "response_format" in body and str(body.get("model", "")).startswith("gpt-image"):
            return openai_error(400, "Unknown parameter: 'response_format'.",
                                type="invalid_request_error", param="response_format",
                                code="unknown_parameter")
        n = body.get("n", 1)
        if self.delay:
            await asyncio.sleep(self.delay)
        if body.get("stream"):
            if n != 1:
                return openai_error(400, "Streaming is only supported with n=1.",
                                    type="invalid_request_error")
            return StreamingResponse(self._stream(body), media_type="text/event-stream")
        if self.mode == "no_data":
            return Response(orjson.dumps({"created": int(time.time())}),
                            media_type="application/json")
        if self.mode == "truncated":
            answer = self._images_response(body, n)
            answer["data"][0]["b64_json"] = answer["data"][0]["b64_json"][:-40]
            return Response(orjson.dumps(answer), media_type="application/json")
        return Response(orjson.dumps(self._images_response(body, n)),
                        media_type="application/json")

    @staticmethod
    def _size(body: dict[str, Any]) -> tuple[str, int, int]:
        size = body.get("size") or "auto"
        resolved = "1024x1024" if size == "auto" else size
        width, height = (int(v) for v in resolved.split("x"))
        return resolved, width, height

    def _settings(self, body: dict[str, Any], resolved: bool) -> dict[str, Any]:
        size, _, _ = self._size(body)
        quality = body.get("quality") or "auto"
        background = body.get("background") or "auto"
        return {
            "size": size if resolved else body.get("size") or "auto",
            "quality": ("medium" if quality == "auto" else quality) if resolved else quality,
            "background": ("opaque" if background == "auto" else background) if resolved
            else background,
            "output_format": body.get("output_format") or "png",
        }

    @staticmethod
    def _usage() -> dict[str, Any]:
        return {"input_tokens": 12, "output_tokens": 272, "total_tokens": 284,
                "input_tokens_details": {"text_tokens": 12, "image_tokens": 0}}

    def _images_response(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        _, width, height = self._size(body)
        data: list[dict[str, Any]] = [{"b64_json": png_b64(width, height, (200, 20 * i, 30))}
                                      for i in range(n)]
        if str(body.get("model", "")).startswith("dall-e"):
            # DALL-E answers carry only created and data; DALL-E 3 rewrites prompts.
            if body.get("model") == "dall-e-3":
                for item in data:
                    item["revised_prompt"] = f"A detailed illustration of {body.get('prompt')}"
            return {"created": int(time.time()), "data": data}
        return {"created": int(time.time()), "data": data, **self._settings(body, True),
                "usage": {**self._usage(),
                          "output_tokens_details": {"image_tokens": 272, "text_tokens": 0}}}

    async def _stream(self, body: dict[str, Any], prefix: str = "image_generation"):
        _, width, height = self._size(body)
        end = self.line_end.encode()

        def frame(event: str, payload: dict[str, Any]) -> bytes:
            return (b"event: " + event.encode() + end + b"data: " + orjson.dumps(payload)
                    + end + end)

        frames = []
        for index in range(int(body.get("partial_images") or 0)):
            frames.append(frame(f"{prefix}.partial_image", {
                "type": f"{prefix}.partial_image",
                "b64_json": png_b64(width, height, (60 * index, 60, 60)),
                "created_at": int(time.time()), **self._settings(body, False),
                "partial_image_index": index,
            }))
        frames.append(frame(f"{prefix}.completed", {
            "type": f"{prefix}.completed",
            "b64_json": png_b64(width, height, (200, 0, 30)),
            "created_at": int(time.time()), **self._settings(body, True),
            "usage": self._usage(),
        }))
        try:
            async for chunk in self._frames(frames):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.stream_abandoned = True
            raise

    async def _frames(self, frames: list[bytes]):
        for number, data in enumerate(frames):
            last = number == len(frames) - 1
            if last and self.mode == "stall_mid_stream":
                await asyncio.sleep(3600)
            if last and self.mode == "drop_mid_stream":
                yield data[: len(data) // 2]
                raise ConnectionResetError("fake upstream drops the connection")
            self.completed_sent = last
            if self.chunk_size:
                for start in range(0, len(data), self.chunk_size):
                    yield data[start:start + self.chunk_size]
            else:
                yield data
            if self.event_gap:
                await asyncio.sleep(self.event_gap)
