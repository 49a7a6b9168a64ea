"""A job's answer as one OpenAI ``ImagesResponse`` (plus ``id``, ``provider``, ``model`` and
``cost``): what a JSON client receives and what an async job keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Image
from proxy.jobs.job import Job
from proxy.request.echo import resolved_settings

NO_IMAGE = GatewayError(502, "The upstream finished without returning an image.",
                        type="upstream_error", code="upstream_no_image")


class _Gathered:
    """A job's answer as its events pass: its images and its ``Completed``."""

    __slots__ = ("completed", "images")

    def __init__(self) -> None:
        self.images: dict[int, Image] = {}
        self.completed: Completed | None = None

    def add(self, event: Event) -> None:
        """Note ``event``; raises the job's ``GatewayError`` if it failed."""
        if isinstance(event, Image):
            self.images[event.index] = event
        elif isinstance(event, Completed):
            self.completed = event
        elif isinstance(event, Failed):
            raise event.error

    def response(self, job: Job) -> dict[str, Any]:
        images = self.images
        if not images:
            raise NO_IMAGE
        return build_response(job, [images[i] for i in sorted(images)], self.completed)


async def collect_response(job: Job, events: AsyncIterator[Event]) -> dict[str, Any]:
    """The response body; raises the job's ``GatewayError`` if it failed."""
    gathered = _Gathered()
    async for event in events:
        gathered.add(event)
    return gathered.response(job)


def response_of(job: Job, events: Iterable[Event]) -> dict[str, Any]:
    """:func:`collect_response` of events already read."""
    gathered = _Gathered()
    for event in events:
        gathered.add(event)
    return gathered.response(job)


def image_item(image: Image) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if image.b64_json is not None:
        item["b64_json"] = image.b64_json
    if image.url is not None:
        item["url"] = image.url
    if image.revised_prompt is not None:
        item["revised_prompt"] = image.revised_prompt
    return item


def build_response(job: Job, images: list[Image], completed: Completed | None) -> dict[str, Any]:
    body: dict[str, Any] = {"created": job.created, "data": [image_item(i) for i in images]}
    body.update(resolved_settings(job.request, job.model.rules, completed))
    cost = job.cost  # priced once, when the job completed
    if completed is not None:
        if completed.usage is not None:
            body["usage"] = usage = completed.usage.to_dict()
            # As the multi-provider API (seed 000) spells the details: an object or null.
            usage["prompt_tokens_details"] = usage["input_tokens_details"]
            usage["completion_tokens_details"] = usage.get("output_tokens_details")
            if cost is not None:
                # As the multi-provider API (seed 000) reports it, inside usage.
                body["usage"] |= {"total_cost": cost, "currency": "USD"}
        body.update(completed.extras)
    body["cost"] = cost
    body["id"] = job.id
    body["provider"] = job.model.provider_name
    body["model"] = job.model.name  # the model that served it (a fallback's, if one did)
    return body
