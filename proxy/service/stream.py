"""A job's answer as OpenAI image-stream SSE frames, numbered.

``image_generation.partial_image`` (or ``image_edit.*`` for edits) for each preview, then one
``*.completed`` per image carrying the usage. A failure after the stream began is an ``error``
event whose data holds ``{"error": {...}}``: that is what makes the official SDKs raise.

Every frame carries ``id:``, its number within the job (1, 2, …): the frames are a function of
the job's events, so every reader of the same job (and a replay of its kept frames) numbers
them alike, and a client that lost its connection resumes after the last one it received
(``Last-Event-ID``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Image, PartialImage, Usage
from proxy.jobs.job import Job
from proxy.request.echo import requested_settings, resolved_settings
from proxy.service.results import NO_IMAGE
from proxy.upstream.sse import encode_event, encode_image_event

# A reader whose job stopped without an end of its own (every other reader left and it was
# cancelled just as this one arrived): nothing was charged, the request can be sent again.
JOB_CANCELLED = GatewayError(503, "The job was cancelled before it finished; send the request "
                             "again.", type="server_error", code="job_cancelled", retryable=True)


def error_frame(error: GatewayError) -> bytes:
    return encode_event("error", {"type": "error", **error.body()})


class StreamRenderer:
    """Turns one job's events, in order, into its frames (without ids)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.prefix = "image_edit" if job.kind == "edit" else "image_generation"
        self.requested = requested_settings(job.request)
        self.finished: list[Image] = []
        self.done = False  # a terminal frame was made

    def frames(self, event: Event) -> list[bytes]:
        if self.done:
            return []
        if isinstance(event, PartialImage):
            return [encode_image_event(f"{self.prefix}.partial_image", {
                "type": f"{self.prefix}.partial_image", "created_at": int(time.time()),
                **self.requested, "partial_image_index": event.partial_index,
            }, event.b64_json)]
        if isinstance(event, Image):
            # Held until Completed brings the usage the completed event must carry.
            self.finished.append(event)
        elif isinstance(event, Completed):
            self.done = True
            return self._completed(event) if self.finished else [error_frame(NO_IMAGE)]
        elif isinstance(event, Failed):
            self.done = True
            return [error_frame(event.error)]
        return []

    def _completed(self, event: Completed) -> list[bytes]:
        job = self.job
        settings = {**self.requested, **resolved_settings(job.request, job.model.rules, event)}
        usage = (event.usage or Usage()).to_dict()
        usage.pop("output_tokens_details", None)  # not part of the stream's ImagesUsage
        return [encode_image_event(f"{self.prefix}.completed", {
            "type": f"{self.prefix}.completed", "created_at": int(time.time()), **settings,
            "usage": usage}, image.b64_json or "")
            for image in sorted(self.finished, key=lambda i: i.index)]


def render_all(job: Job, events: Iterable[Event]) -> list[bytes]:
    """Every frame of a finished job's events (what its answer keeps for replays)."""
    renderer = StreamRenderer(job)
    return [frame for event in events for frame in renderer.frames(event)]


def numbered(number: int, frame: bytes) -> bytes:
    return b"id: %d\n" % number + frame


class LiveStream:
    """One reader's stream of a running job, from the frame after ``after``.

    ``open`` waits for the job's first event: a job that fails before anything was streamed is
    answered with a real status code (the SDKs raise on it), not a ``200`` stream."""

    def __init__(self, job: Job, events: AsyncGenerator[Event, None], after: int = 0) -> None:
        self.job = job
        self._events = events
        self._after = after
        self._first: Event | None = None

    async def open(self) -> GatewayError | None:
        try:
            self._first = await anext(self._events)
        except StopAsyncIteration:
            return JOB_CANCELLED
        if isinstance(self._first, Failed):
            await self._events.aclose()
            return self._first.error
        return None

    async def aclose(self) -> None:
        await self._events.aclose()

    async def _all(self) -> AsyncIterator[Event]:
        if self._first is not None:
            yield self._first
        async for event in self._events:
            yield event

    async def frames(self) -> AsyncIterator[bytes]:
        """The numbered frames. Closes the job's events however it ends."""
        renderer = StreamRenderer(self.job)
        number = 0
        try:
            async for event in self._all():
                for frame in renderer.frames(event):
                    number += 1
                    if number > self._after:
                        yield numbered(number, frame)
                if renderer.done:
                    return
            yield numbered(number + 1, error_frame(JOB_CANCELLED))
        finally:
            await self._events.aclose()


class ReplayedStream:
    """A finished job's kept frames (or its error, when it failed before streaming anything),
    from the frame after ``after``."""

    def __init__(self, frames: list[bytes] | None, error: GatewayError | None,
                 after: int = 0) -> None:
        self._frames = frames or []
        self._error = error
        self._after = after

    async def open(self) -> GatewayError | None:
        return self._error

    async def aclose(self) -> None:
        return None

    async def frames(self) -> AsyncIterator[bytes]:
        for number, frame in enumerate(self._frames, 1):
            if number > self._after:
                yield numbered(number, frame)
