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
from proxy.upstream.sse import encode_event, image_event_pieces

# A reader whose job stopped without an end of its own (every other reader left and it was
# cancelled just as this one arrived): nothing was charged, the request can be sent again.
JOB_CANCELLED = GatewayError(503, "The job was cancelled before it finished; send the request "
                             "again.", type="server_error", code="job_cancelled", retryable=True)


# A frame as the writer writes it: its bytes, or its pieces in order (an image frame: the
# image's base64 between the frame's head and tail, never copied into one string with them).
Frame = bytes | tuple[bytes, ...]


def joined(frame: Frame) -> bytes:
    return frame if isinstance(frame, bytes) else b"".join(frame)


def error_frame(error: GatewayError, head: bytes = b"") -> bytes:
    return encode_event("error", {"type": "error", **error.body()}, head)


class StreamRenderer:
    """Turns one job's events, in order, into its frames, numbered from 1 (``count`` is the
    number of the last one made). The ``id:`` line is written with the frame, and each image
    is let go as its frame is made: a 1.5 MB image waiting for a slow client is held once, in
    its frame's pieces, never copied into the frame nor again to be numbered."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.prefix = "image_edit" if job.kind == "edit" else "image_generation"
        self.requested = requested_settings(job.request)
        self.finished: list[Image] = []
        self.done = False  # a terminal frame was made
        self.count = 0

    def _id(self) -> bytes:
        self.count += 1
        return b"id: %d\n" % self.count

    def frames(self, event: Event) -> list[Frame]:
        if self.done:
            return []
        if isinstance(event, PartialImage):
            return [image_event_pieces(f"{self.prefix}.partial_image", {
                "type": f"{self.prefix}.partial_image", "created_at": int(time.time()),
                **self.requested, "partial_image_index": event.partial_index,
            }, event.b64_json, self._id())]
        if isinstance(event, Image):
            # Held until Completed brings the usage the completed event must carry.
            self.finished.append(event)
        elif isinstance(event, Completed):
            return self._completed(event) if self.finished else [self.error(NO_IMAGE)]
        elif isinstance(event, Failed):
            return [self.error(event.error)]
        return []

    def error(self, error: GatewayError) -> bytes:
        """The terminal ``error`` frame."""
        self.done = True
        return error_frame(error, self._id())

    def _completed(self, event: Completed) -> list[Frame]:
        self.done = True
        job = self.job
        settings = {**self.requested, **resolved_settings(job.request, job.model.rules, event)}
        usage = (event.usage or Usage()).to_dict()
        usage.pop("output_tokens_details", None)  # not part of the stream's ImagesUsage
        self.finished.sort(key=lambda i: i.index, reverse=True)
        frames: list[Frame] = []
        while self.finished:
            frames.append(image_event_pieces(f"{self.prefix}.completed", {
                "type": f"{self.prefix}.completed", "created_at": int(time.time()), **settings,
                "usage": usage}, self.finished.pop().b64_json or "", self._id()))
        return frames


def render_all(job: Job, events: Iterable[Event]) -> list[bytes]:
    """Every frame of a finished job's events, numbered (what its answer keeps for replays)."""
    renderer = StreamRenderer(job)
    return [joined(frame) for event in events for frame in renderer.frames(event)]


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

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """The numbered frames. Closes the job's events however it ends."""
        renderer = StreamRenderer(self.job)
        try:
            async for event in self._all():
                frames = renderer.frames(event)
                number = renderer.count - len(frames)
                while frames:
                    number += 1
                    frame = frames.pop(0)
                    if number > self._after:
                        yield frame
                    del frame
                if renderer.done:
                    return
            yield renderer.error(JOB_CANCELLED)
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

    async def frames(self) -> AsyncGenerator[Frame, None]:
        for frame in self._frames[self._after:]:  # numbered from 1 when they were made
            yield frame
