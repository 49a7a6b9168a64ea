"""Provider ``gemini``: Gemini's native image models through ``generateContent``.

Gemini draws one image per call (``candidateCount`` must be 1), so ``n`` becomes ``n`` parallel
calls, with a ``Progress`` event as each answers. Each answer is read on its own
(:mod:`.wire`): thought parts skipped, repeats dropped, refusals that came as HTTP 200 kept as
:class:`Refusal` so that one blocked call is listed in ``filtered`` next to the others' images
rather than failing them (all blocked: the request fails with the reason). Images are transcoded
in a worker thread when the upstream's format is not the one asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from proxy.core.events import Completed, Event, Image, Progress, Usage
from proxy.providers.base import Call
from proxy.providers.google.backend import (
    GoogleProvider,
    GoogleSettings,
    encoded,
)
from proxy.providers.google.errors import Refusal, refusals_error
from proxy.providers.google.gemini.wire import Answer, add_usage, read_answer, request_body

# Cancelled calls get this long to close their connections when the job is abandoned.
_CLEANUP_SECONDS = 5.0


class GeminiSettings(GoogleSettings):
    # Sent as ``safetySettings``: [{"category": "HARM_CATEGORY_…", "threshold": "BLOCK_…"}].
    safety_settings: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class _Call:
    answer: Answer
    # The answer's images in the requested format: (base64, width, height).
    images: list[tuple[str, int, int]]


class GeminiProvider(GoogleProvider):
    name = "gemini"
    settings_class = GeminiSettings
    settings: GeminiSettings

    default_location = "global"

    async def generate(self, call: Call) -> AsyncGenerator[Event, None]:
        request = call.request
        output_format = request.output_format or "png"
        body = orjson.dumps(request_body(request, vertex=self.backend.vertex,
                                         safety_settings=self.settings.safety_settings))
        n = request.n
        calls: list[_Call | None] = [None] * n

        async def one(index: int) -> tuple[int, _Call]:
            return index, await self._call(call, body, output_format)

        # Plain asyncio tasks, not an anyio task group: this generator is resumed from more
        # than one task (the route takes the first event, the SSE response the rest), and a
        # task group's cancel scope must be left in the task that entered it.
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        try:
            for done, next_call in enumerate(asyncio.as_completed(tasks), start=1):
                index, call = await next_call
                calls[index] = call
                yield Progress(100.0 * done / n, step=done, total_steps=n, stage="generating")
        finally:
            for task in tasks:
                task.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_SECONDS):
                await asyncio.gather(*tasks, return_exceptions=True)

        images, usage, extras = _merge(calls, self.model.name)
        for index, (b64, _, _) in enumerate(images):
            yield Image(index, b64_json=b64)
        _, width, height = images[0]
        yield Completed(usage, {"size": f"{width}x{height}", "output_format": output_format},
                        extras)

    async def _call(self, call: Call, body: bytes, output_format: str) -> _Call:
        answer = read_answer(await self.post(call, "generateContent", body))
        compression = call.request.output_compression
        images = [await anyio.to_thread.run_sync(encoded, b64, output_format, compression)
                  for b64, _ in answer.images]
        return _Call(answer, images)


def _merge(calls: list[_Call | None], model: str
           ) -> tuple[list[tuple[str, int, int]], Usage | None, dict[str, Any]]:
    """The images of all calls in call order, their summed usage, and the response extras;
    raises the refusal when no call drew anything."""
    images: list[tuple[str, int, int]] = []
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    refusals: list[Refusal] = []
    usage: Usage | None = None
    for call in calls:
        assert call is not None
        usage = add_usage(usage, call.answer.usage)
        if call.answer.refusal is not None:
            refusals.append(call.answer.refusal)
            continue
        first = len(images)
        images.extend(call.images)
        for kind, value in call.answer.parts:
            parts.append({"type": "text", "text": value} if kind == "text"
                         else {"type": "image", "index": first + value})
        if call.answer.text:
            texts.append(call.answer.text)
    if not images:
        raise refusals_error(refusals, model)
    extras: dict[str, Any] = {}
    if texts:  # plain image answers stay plain OpenAI
        extras["text"] = "\n\n".join(texts)
        extras["parts"] = parts
    if refusals:  # never silently fewer images than asked for
        extras["filtered"] = [r.entry() for r in refusals]
    return images, usage, extras
