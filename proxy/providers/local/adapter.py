"""Provider ``local``: the built-in renderer, so the gateway works with no API key at all.

It paints a real picture from the prompt (``painter.py``) in steps; every step is real work and
reports progress, and when streaming, chosen steps are sent as partial images that visibly refine
toward the final one. Rendering and encoding run in worker threads so the event loop stays free;
a capacity limiter keeps concurrent renders to what the machine can do.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncGenerator, Iterator

import anyio
from PIL import Image as PILImage
from pydantic import Field

from proxy.core.events import Completed, Event, Image, PartialImage, Progress, Usage
from proxy.images.codec import encode
from proxy.providers.base import Call, Provider, ProviderSettings
from proxy.renderer.painter import plan_scene, quality_steps, render_steps

_WORDS = re.compile(r"\w+|[^\w\s]")


class LocalSettings(ProviderSettings):
    # Extra seconds per step: makes the renderer as slow as a real backend, for demos of
    # progress bars and for trying client timeouts. 0 renders as fast as the machine can.
    step_delay: float = Field(0.0, ge=0, le=60)
    # Renders running at once across all jobs of this model; each one keeps a core busy.
    max_concurrent: int = Field(2, ge=1, le=64)


def partial_steps(steps: int, partials: int) -> list[int]:
    """Which steps (0-based, never the last) become partial images: evenly spread."""
    if partials <= 0 or steps < 2:
        return []
    spread = {(k + 1) * steps // (partials + 1) - 1 for k in range(partials)}
    return sorted({max(0, min(steps - 2, step)) for step in spread})


def encode_image(image: PILImage.Image, output_format: str, compression: int | None) -> str:
    """Encode to base64 once, in the format the client asked for (frames carry alpha only
    when a transparent background was requested)."""
    return base64.b64encode(encode(image, output_format, compression)).decode("ascii")


def _size(call: Call, default_size: str | None) -> tuple[int, int]:
    """The requested size; for an edit without one, the input image's (in steps of 8)."""
    size = call.request.size
    if size in (None, "auto") and call.request.images:
        first = call.request.images[0]
        scale = min(1.0, 4096 / max(first.width, first.height))
        return (max(64, round(first.width * scale / 8) * 8),
                max(64, round(first.height * scale / 8) * 8))
    if size in (None, "auto"):
        size = default_size or "1024x1024"
    width, height = size.split("x")
    return int(width), int(height)


class LocalProvider(Provider):
    name = "local"
    settings_class = LocalSettings
    settings: LocalSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._limiter = anyio.CapacityLimiter(self.settings.max_concurrent)

    async def generate(self, call: Call) -> AsyncGenerator[Event, None]:
        request = call.request
        width, height = _size(call, self.model.rules.default_size)
        steps = quality_steps(request.quality)
        total = steps * request.n
        output_format = request.output_format or "png"
        transparent = request.background == "transparent"
        seed = request.seed or 0
        previews = partial_steps(steps, request.partial_images) if request.stream else []

        yield Progress(0.0, step=0, total_steps=total, stage="queued")
        # An edit paints over the first input image; where the mask is opaque it is kept as is.
        base = mask = None
        if request.images:
            base = await anyio.to_thread.run_sync(request.images[0].decoded)
        if request.mask is not None:
            mask = await anyio.to_thread.run_sync(request.mask.decoded)
        async with self._limiter:
            for index in range(request.n):
                scene = await anyio.to_thread.run_sync(
                    plan_scene, request.prompt, seed + index, width, height
                )
                frames: Iterator[PILImage.Image] = render_steps(
                    scene, steps, edit_base=base, mask=mask, transparent=transparent)
                for step in range(steps):
                    frame = await anyio.to_thread.run_sync(next, frames)
                    if step in previews and index == 0:
                        b64 = await anyio.to_thread.run_sync(
                            encode_image, frame, output_format, request.output_compression)
                        yield PartialImage(index, previews.index(step), b64)
                    if step == steps - 1:
                        b64 = await anyio.to_thread.run_sync(
                            encode_image, frame, output_format, request.output_compression)
                        yield Image(index, b64_json=b64)
                    done = index * steps + step + 1
                    yield Progress(100.0 * done / total, step=done, total_steps=total,
                                   stage="rendering")
                    if self.settings.step_delay:
                        await asyncio.sleep(self.settings.step_delay)

        prompt_tokens = len(_WORDS.findall(request.prompt))
        yield Completed(
            Usage(input_tokens=prompt_tokens, input_text_tokens=prompt_tokens),
            resolved={
                "size": f"{width}x{height}",
                "quality": request.quality if request.quality not in (None, "auto") else
                (self.model.rules.default_quality or "medium"),
                "output_format": output_format,
                "background": "transparent" if transparent else "opaque",
            },
        )
