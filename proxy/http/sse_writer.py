"""Write a job's events as OpenAI image-stream SSE.

``image_generation.partial_image`` (or ``image_edit.*`` for edits) for each preview, then one
``*.completed`` per image carrying the usage. A failure after the stream began is an ``error``
event whose data holds ``{"error": {...}}``: that is what makes the official SDKs raise.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from proxy.core.events import Completed, Event, Failed, Image, PartialImage, Usage
from proxy.jobs.job import Job
from proxy.request.echo import requested_settings, resolved_settings
from proxy.service.results import NO_IMAGE
from proxy.upstream.sse import encode_event, encode_image_event


def error_event(error_body: dict[str, Any]) -> bytes:
    return encode_event("error", {"type": "error", **error_body})


async def sse_events(job: Job, first: Event, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """SSE frames for ``first`` and everything after it. Closes ``events`` however it ends."""
    prefix = "image_edit" if job.kind == "edit" else "image_generation"
    requested = requested_settings(job.request)
    finished: list[Image] = []

    async def all_events() -> AsyncIterator[Event]:
        yield first
        async for event in events:
            yield event

    try:
        async for event in all_events():
            if isinstance(event, PartialImage):
                yield encode_image_event(f"{prefix}.partial_image", {
                    "type": f"{prefix}.partial_image",
                    "created_at": int(time.time()),
                    **requested,
                    "partial_image_index": event.partial_index,
                }, event.b64_json)
            elif isinstance(event, Image):
                # Held until Completed brings the usage the completed event must carry.
                finished.append(event)
            elif isinstance(event, Completed):
                if not finished:
                    yield error_event(NO_IMAGE.body())
                    return
                settings = {**requested, **resolved_settings(job.request, job.model.rules, event)}
                usage = (event.usage or Usage()).to_dict()
                usage.pop("output_tokens_details", None)  # not part of the stream's ImagesUsage
                finished.sort(key=lambda i: i.index, reverse=True)
                while finished:
                    # Each image is let go as its frame is made: while a slow client reads
                    # the frame, the image is held once (the frame), not twice.
                    frame = encode_image_event(f"{prefix}.completed", {
                        "type": f"{prefix}.completed",
                        "created_at": int(time.time()),
                        **settings,
                        "usage": usage,
                    }, finished.pop().b64_json or "")
                    yield frame
                    del frame
                return
            elif isinstance(event, Failed):
                yield error_event(event.error.body())
                return
    finally:
        await events.aclose()  # type: ignore[attr-defined]
