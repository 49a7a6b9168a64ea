"""Provider ``xai``: xAI's image generation (grok-imagine-image, grok-2-image).

OpenAI's dialect at first sight, different in the details (providers.md §D): no ``size`` or
``style`` (xAI answers ``size`` with a 400), an ``aspect_ratio`` and a ``resolution`` tier instead,
``b64_json`` behind a ``data:image/jpeg;base64,`` prefix, JPEG whatever format was asked (the
gateway transcodes), errors shaped ``{"code": "<sentence>", "error": "<message>"}`` whose only
clue is the message, and images withheld by moderation flagged ``respect_moderation: false``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
import orjson
from pydantic import Field, SecretStr

from proxy.core.errors import GatewayError, upstream_error
from proxy.core.events import Completed, Event, Image, Usage
from proxy.images.codec import b64_as
from proxy.providers.base import Call, ProviderSettings
from proxy.providers.openai.adapter import OpenAIProvider, invalid_response
from proxy.providers.openai.errors import error_envelope, error_from_upstream, parse_usage

# What xAI refuses outright: never forwarded, not even from a passthrough model's extras.
_NEVER_SENT = frozenset({"size", "style"})
# Request fields forwarded as they are, when the validated request has them.
_FORWARDED = ("aspect_ratio", "resolution", "quality", "user")
# xAI's 400s say what happened only in words.
_MODERATION = re.compile(r"moderat|content polic|safety system", re.IGNORECASE)
_BAD_KEY = re.compile(r"(incorrect|invalid) api key", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"Argument not supported: (\w+)")
# Images of one answer transcoded at the same time (each in a worker thread).
_TRANSCODERS = 2


class XAISettings(ProviderSettings):
    api_key: SecretStr
    base_url: str = Field("https://api.x.ai/v1", pattern=r"^https?://")
    # Sent with every upstream request.
    headers: dict[str, str] = Field(default_factory=dict)


class XAIProvider(OpenAIProvider):
    name = "xai"
    lifts_images = False  # its JPEGs are transcoded to the format asked for
    settings_class = XAISettings
    settings: XAISettings

    def _headers(self) -> dict[str, str]:
        return {**self.settings.headers,
                "authorization": f"Bearer {self.settings.api_key.get_secret_value()}"}

    def _body(self, call: Call, stream: bool) -> bytes:
        """xAI takes edits as JSON, not multipart: images as data URLs (at most 3, or 5 on
        grok-imagine-image-2.0; the catalog holds the limit)."""
        payload = self._payload(call, stream)
        if call.kind == "edit":
            refs = [{"url": f"data:{i.mime};base64,{i.b64}", "type": "image_url"}
                    for i in call.request.images]
            if len(refs) == 1 and not call.request.images_listed:
                payload["image"] = refs[0]
            else:
                payload["images"] = refs
        return orjson.dumps(payload)

    def _payload(self, call: Call, stream: bool) -> dict[str, Any]:
        # xAI does not stream images: the gateway emulates the stream, so ``stream`` is unused.
        request = call.request
        payload: dict[str, Any] = {
            "model": self.model.upstream_model, "prompt": request.prompt, "n": request.n,
            # Base64 unless the client asked for xAI's (temporary) URLs.
            "response_format": "url" if request.response_format == "url" else "b64_json",
        }
        for name in _FORWARDED:
            value = getattr(request, name)
            if value is not None:
                payload[name] = value
        payload.update((k, v) for k, v in request.extra.items() if k not in _NEVER_SENT)
        return payload

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str], *,
               mid_stream: bool = False) -> GatewayError:
        _, message = error_envelope(raw)
        if status in (400, 401, 403) and _BAD_KEY.search(message):
            # xAI answers a wrong key with a 400: it is the gateway's key, not the client's fault.
            return error_from_upstream(401, raw, headers)
        if status in (400, 403, 422) and _MODERATION.search(message):
            return GatewayError(400, message, code="content_policy_violation")
        unsupported = _UNSUPPORTED.search(message) if status in (400, 422) else None
        if unsupported:
            return GatewayError(400, message, param=unsupported.group(1),
                                code="unsupported_parameter")
        return error_from_upstream(status, raw, headers, mid_stream=mid_stream)

    async def _body_events(self, call: Call, body: Any,
                           lifted: dict[str, bytes]) -> AsyncGenerator[Event, None]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise invalid_response("a body without a 'data' list")
        request = call.request
        items, withheld = [], 0
        for index, item in enumerate(body["data"]):
            if isinstance(item, dict) and item.get("respect_moderation") is False:
                withheld += 1  # flagged: its payload (if any) is not to be shown
            elif isinstance(item, dict) and (item.get("b64_json") or item.get("url")):
                items.append(item)
            else:
                raise invalid_response(f"image {index} without 'b64_json' or 'url'")
        if not items and withheld:
            raise GatewayError(400, "xAI's moderation withheld the generated image.",
                               code="content_policy_violation")
        # Some withheld, some not: the others are returned (fewer than n, as Imagen does).
        if not items:
            raise upstream_error("xAI returned no images.", code="upstream_no_image")

        want_url = request.response_format == "url"
        sources = [None if (want_url and item.get("url")) or not item.get("b64_json")
                   else strip_data_url(item["b64_json"]) for item in items]
        output_format = request.output_format or "png"
        encoded = await _transcode(sources, output_format, request.output_compression)

        resolved: dict[str, str] = {}
        for index, (item, done) in enumerate(zip(items, encoded, strict=True)):
            revised = item.get("revised_prompt")
            revised = revised if isinstance(revised, str) and revised else None
            if done is None:
                yield Image(index, url=item["url"], revised_prompt=revised)
                guessed = _url_format(item["url"])
                if guessed:
                    resolved.setdefault("output_format", guessed)
                continue
            b64, width, height = done
            resolved.setdefault("size", f"{width}x{height}")
            resolved["output_format"] = output_format
            yield Image(index, b64_json=b64, revised_prompt=revised)
        yield Completed(_usage(body.get("usage")), resolved,
                        extras=_withheld(withheld), cost_usd=_charged(body.get("usage")))


def strip_data_url(value: str) -> str:
    """The base64 of ``data:image/jpeg;base64,<base64>`` (or the value itself, if bare)."""
    if not value.startswith("data:"):
        return value
    head, comma, data = value.partition(",")
    if not comma or not head.endswith(";base64") or not data:
        raise invalid_response("a data URL that is not base64")
    return data


async def _transcode(sources: list[str | None], output_format: str,
                     compression: int | None) -> list[tuple[str, int, int] | None]:
    """``b64_as`` of each source in worker threads, a few at a time; None stays None."""
    results: list[tuple[str, int, int] | None] = [None] * len(sources)
    unreadable: list[int] = []
    limiter = anyio.CapacityLimiter(_TRANSCODERS)

    async def one(index: int, b64: str) -> None:
        try:
            results[index] = await anyio.to_thread.run_sync(
                b64_as, b64, output_format, compression, limiter=limiter)
        except (ValueError, OSError):  # bad base64, or not an image PIL can read
            unreadable.append(index)

    async with anyio.create_task_group() as group:
        for index, b64 in enumerate(sources):
            if b64 is not None:
                group.start_soon(one, index, b64)
    if unreadable:
        raise invalid_response(f"image {min(unreadable)} that is not a readable image")
    return results


def _url_format(url: str) -> str | None:
    path = url.split("?", 1)[0].lower()
    for suffix, name in ((".jpeg", "jpeg"), (".jpg", "jpeg"), (".png", "png"), (".webp", "webp")):
        if path.endswith(suffix):
            return name
    return None


def _usage(raw: Any) -> Usage | None:
    """OpenAI-shaped usage when xAI reports tokens; its ``cost_in_usd_ticks`` alone is not."""
    if isinstance(raw, dict) and ("input_tokens" in raw or "output_tokens" in raw):
        return parse_usage(raw)
    return None


def _withheld(count: int) -> dict[str, Any]:
    """Images xAI's moderation withheld are reported, never silently missing."""
    if not count:
        return {}
    return {"filtered": [{"reason": "moderation",
                          "message": "xAI's moderation withheld this image."}] * count}


def _charged(usage: Any) -> float | None:
    """xAI states its charge in ticks of 1e-10 USD."""
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, dict) else None
    if isinstance(ticks, int) and not isinstance(ticks, bool) and ticks >= 0:
        return ticks / 1e10
    return None
