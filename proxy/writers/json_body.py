"""Collect a job's events into one OpenAI ``ImagesResponse`` (plus ``id`` and ``provider``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from proxy.events import Completed, Event, Failed, Image, Usage
from proxy.jobs import Job
from proxy.writers.echo import resolved_settings
from proxy.writers.sse_stream import NO_IMAGE


async def collect_response(job: Job, events: AsyncIterator[Event]) -> dict[str, Any]:
    """The response body; raises the job's ``GatewayError`` if it failed."""
    images: dict[int, Image] = {}
    completed: Completed | None = None
    async for event in events:
        if isinstance(event, Image):
            images[event.index] = event
        elif isinstance(event, Completed):
            completed = event
        elif isinstance(event, Failed):
            raise event.error
    if not images:
        raise NO_IMAGE
    return build_response(job, [images[i] for i in sorted(images)], completed)


def image_item(image: Image) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if image.b64_json is not None:
        item["b64_json"] = image.b64_json
    if image.url is not None:
        item["url"] = image.url
    if image.revised_prompt is not None:
        item["revised_prompt"] = image.revised_prompt
    return item


def job_cost(job: Job, images: int, usage: Usage | None, resolved: dict[str, str]) -> float | None:
    """USD for this job from the model's prices; None when no price is known."""
    price = job.model.price
    if price is None:
        return None
    return price.cost(images=images, usage=usage, size=resolved.get("size"),
                      quality=resolved.get("quality"), tier=job.request.resolution or "1K")


def build_response(job: Job, images: list[Image], completed: Completed | None) -> dict[str, Any]:
    body: dict[str, Any] = {"created": job.created, "data": [image_item(i) for i in images]}
    resolved = resolved_settings(job, completed)
    body.update(resolved)
    usage = completed.usage if completed is not None else None
    if usage is not None:
        body["usage"] = usage.to_dict()
    if completed is not None:
        body.update(completed.extras)
    charged = completed.cost_usd if completed is not None else None
    body["cost"] = (round(charged, 6) if charged is not None
                    else job_cost(job, len(images), usage, resolved))
    body["id"] = job.id
    body["provider"] = job.model.provider_name
    return body
