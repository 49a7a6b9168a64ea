"""A JSON answer written while the upstream still sends it.

A job asked for pieces (``Job.pieces``: an attached JSON request whose images are not hosted)
may get its large images' base64 as ``ImagePiece`` events. :func:`take_answer` reads the job's
events until the first piece comes (or the job ends: then the answer is the usual
``ImagesResponse`` dict). From the first piece on everything that could fail the request
with a status code has passed (the upstream's status and error body, retries and fallbacks),
and :class:`PassedAnswer` writes our ``ImagesResponse`` around the upstream's base64: our own
fields before the first image and between items, each image's bytes as they come, and, once
the job has ended (its usage recorded in the ledger, as for a buffered answer), the rest:
``usage``, ``cost``, ``id``... The same fields as :func:`~proxy.service.results.build_response`,
in the same order.

A job that fails after the first piece raises its ``GatewayError`` from :meth:`write`: the
answer cannot be completed, and the transport aborts the connection (a body that is cut is
not one a client can parse).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson

from proxy.core.events import Completed, Event, Failed, Image, ImagePiece, b64_text
from proxy.jobs.job import Job
from proxy.service.results import build_response, image_item

Send = Callable[[bytes], Awaitable[None]]


class PassedAnswer:
    """An answer whose first image piece has come: :meth:`write` it, then :meth:`aclose`."""

    def __init__(self, job: Job, events: AsyncGenerator[Event, None], held: list[Event]) -> None:
        self.job = job
        self._events = events
        self._held = held
        self._open: int | None = None  # the image whose base64 string is open
        self._items = 0  # items begun

    async def write(self, send: Send) -> bytes:
        """Send the answer but for its last bytes, which are returned (the job has ended: its
        usage is recorded); raises the job's ``GatewayError`` if it fails meanwhile."""
        completed: Completed | None = None
        held, self._held = self._held, []
        for event in held:
            completed = await self._event(event, send) or completed
        del held
        async for event in self._events:
            completed = await self._event(event, send) or completed
        if completed is None or self._open is not None:
            raise RuntimeError(f"job {self.job.id} ended without completing its answer")
        rest = build_response(self.job, [], completed)
        del rest["created"], rest["data"]
        return b"]," + orjson.dumps(rest)[1:]

    async def _event(self, event: Event, send: Send) -> Completed | None:
        if isinstance(event, ImagePiece):
            if self._open != event.index:
                if self._open is not None:
                    raise RuntimeError(f"job {self.job.id}: image {event.index} began inside "
                                       f"image {self._open}")
                await send(self._separator() + b'{"b64_json":"')
                self._open = event.index
            for part in event.parts:
                await send(part)
        elif isinstance(event, Image):
            await send(self._item_end(event) if event.pieced else
                       self._separator() + orjson.dumps(_whole(event)))
        elif isinstance(event, Completed):
            return event
        elif isinstance(event, Failed):
            raise event.error
        return None

    def _separator(self) -> bytes:
        self._items += 1
        if self._items > 1:
            return b","
        return b'{"created":%d,"data":[' % self.job.created

    def _item_end(self, image: Image) -> bytes:
        if self._open != image.index:
            raise RuntimeError(f"job {self.job.id}: image {image.index} ended unopened")
        self._open = None
        fields = orjson.dumps(image_item(image))  # the fields after b64_json, if any
        return b'"}' if fields == b"{}" else b'",' + fields[1:]

    async def aclose(self) -> None:
        """Done with the job's events (early: the job is cancelled, its upstream closed)."""
        await self._events.aclose()


def _whole(image: Image) -> dict[str, Any]:
    item = image_item(image)
    if "b64_json" in item:
        item["b64_json"] = b64_text(item["b64_json"])
    return item


async def take_answer(job: Job, events: AsyncGenerator[Event, None]) -> PassedAnswer | list[Event]:
    """The answer to pass on, once its first piece came; else (no piece before the job's end:
    the events were read to their end) the job's events, to collect as usual."""
    held: list[Event] = []
    async for event in events:
        held.append(event)
        if isinstance(event, ImagePiece):
            return PassedAnswer(job, events, held)
    return held
