"""A job's answer as OpenAI image-stream SSE frames, numbered.

``image_generation.partial_image`` (or ``image_edit.*`` for edits) for each preview, then one
``*.completed`` per image carrying the usage. A failure after the stream began is an ``error``
event whose data holds ``{"error": {...}}``: that is what makes the official SDKs raise.

Every frame carries ``id:``, its number within the job (1, 2, …): the frames are a function of
the job's events, so every reader of the same job (and a replay of its kept frames) numbers
them alike, and a client that lost its connection resumes after the last one it received
(``Last-Event-ID``).

A final image whose base64 comes in ``ImagePiece`` events (a stream written to its one client
while the upstream still sends it) is written the same way: its frame's head (``id:``, the
event's name, ``type`` and ``created_at``) with its first piece, each piece as it comes, and the
rest of its fields (the settings, the usage) once the job has completed. If the job fails with
such a frame begun, the frame cannot be finished nor an ``error`` event written after it:
:class:`StreamBroken` is raised, and the connection is aborted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

import orjson

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Image, ImagePiece, PartialImage, Usage
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


class StreamBroken(Exception):
    """Job ``job_id`` failed (``error``) while a frame was being written piece by piece."""

    def __init__(self, job_id: str, error: GatewayError) -> None:
        super().__init__(error.message)
        self.job_id = job_id
        self.error = error


def joined(frame: Frame) -> bytes:
    return frame if isinstance(frame, bytes) else b"".join(frame)


def error_frame(error: GatewayError, head: bytes = b"") -> bytes:
    return encode_event("error", {"type": "error", **error.body()}, head)


class StreamRenderer:
    """Turns one job's events, in order, into its frames, numbered from 1 (``count`` is the
    number of the last one begun). The ``id:`` line is written with the frame, and each image
    is let go as its frame is made: a 1.5 MB image waiting for a slow client is held once, in
    its frame's pieces, never copied into the frame nor again to be numbered. What
    :meth:`frames` returns is ``(number, frame or part of one)`` in order: an image that comes
    in pieces makes its frame in parts (see the module's docstring)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.prefix = "image_edit" if job.kind == "edit" else "image_generation"
        self.requested = requested_settings(job.request)
        self.finished: list[Image] = []
        self.done = False  # a terminal frame was made
        self.count = 0
        self._open: int | None = None  # the image whose frame is being written in pieces
        self._pieced: dict[int, int] = {}  # image index -> its frame's number, awaiting its end

    @property
    def mid_frame(self) -> bool:
        """A frame was begun in pieces and is not finished: nothing else can follow it."""
        return self._open is not None or bool(self._pieced)

    def _id(self) -> bytes:
        self.count += 1
        return b"id: %d\n" % self.count

    def frames(self, event: Event) -> list[tuple[int, Frame]]:
        if self.done:
            return []
        if isinstance(event, ImagePiece):
            return self._piece(event)
        if isinstance(event, PartialImage):
            frame = image_event_pieces(f"{self.prefix}.partial_image", {
                "type": f"{self.prefix}.partial_image", "created_at": int(time.time()),
                **self.requested, "partial_image_index": event.partial_index,
            }, event.b64_json, self._id())
            return [(self.count, frame)]
        if isinstance(event, Image):
            # Held until Completed brings the usage the completed event must carry.
            if event.pieced:
                if self._open != event.index:
                    raise RuntimeError(f"job {self.job.id}: image {event.index} ended unopened")
                self._open = None
            self.finished.append(event)
        elif isinstance(event, Completed):
            if self._open is not None:
                raise StreamBroken(self.job.id, NO_IMAGE)
            return self._completed(event) if self.finished else [self.error(NO_IMAGE)]
        elif isinstance(event, Failed):
            if self.mid_frame:
                raise StreamBroken(self.job.id, event.error)
            return [self.error(event.error)]
        return []

    def _piece(self, piece: ImagePiece) -> list[tuple[int, Frame]]:
        out: list[tuple[int, Frame]] = []
        if self._open is None:
            self._open = piece.index
            self._pieced[piece.index] = self.count + 1
            head = encode_event(f"{self.prefix}.completed", {
                "type": f"{self.prefix}.completed", "created_at": int(time.time()),
                "b64_json": ""}, self._id())
            out.append((self.count, head[:head.rindex(b'"}')]))
        elif self._open != piece.index:
            raise RuntimeError(f"job {self.job.id}: image {piece.index} began inside image "
                               f"{self._open}")
        number = self._pieced[piece.index]
        out += [(number, part) for part in piece.parts]
        return out

    def error(self, error: GatewayError) -> tuple[int, Frame]:
        """The terminal ``error`` frame."""
        self.done = True
        frame = error_frame(error, self._id())
        return self.count, frame

    def _completed(self, event: Completed) -> list[tuple[int, Frame]]:
        self.done = True
        job = self.job
        settings = {**self.requested, **resolved_settings(job.request, job.model.rules, event)}
        usage = (event.usage or Usage()).to_dict()
        usage.pop("output_tokens_details", None)  # not part of the stream's ImagesUsage
        self.finished.sort(key=lambda i: i.index, reverse=True)
        frames: list[tuple[int, Frame]] = []
        while self.finished:
            image = self.finished.pop()
            if image.pieced:  # its frame's head and image went ahead: the rest of its fields
                rest = orjson.dumps({**settings, "usage": usage})
                frames.append((self._pieced.pop(image.index), b'",' + rest[1:] + b"\n\n"))
                continue
            frames.append((self.count + 1, image_event_pieces(f"{self.prefix}.completed", {
                "type": f"{self.prefix}.completed", "created_at": int(time.time()), **settings,
                "usage": usage}, image.b64_json or "", self._id())))
        return frames


def render_all(job: Job, events: Iterable[Event]) -> list[bytes]:
    """Every frame of a finished job's events, numbered (what its answer keeps for replays)."""
    renderer = StreamRenderer(job)
    parts: dict[int, list[bytes]] = {}
    for event in events:
        for number, frame in renderer.frames(event):
            parts.setdefault(number, []).append(joined(frame))
    return [b"".join(parts[number]) for number in sorted(parts)]


class LiveStream:
    """One reader's stream of a running job, from the frame after ``after``.

    ``open`` waits for the job's first event: a job that fails before anything was streamed is
    answered with a real status code (the SDKs raise on it), not a ``200`` stream."""

    def __init__(self, job: Job, events: AsyncGenerator[Event, None], after: int = 0) -> None:
        self.job = job
        self._events = events
        self._after = after
        self._first: Event | None = None
        self._renderer = StreamRenderer(job)

    @property
    def mid_frame(self) -> bool:
        return self._renderer.mid_frame

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
        renderer = self._renderer
        try:
            async for event in self._all():
                frames = renderer.frames(event)
                del event
                while frames:
                    number, frame = frames.pop(0)
                    if number > self._after:
                        yield frame
                    del frame
                if renderer.done:
                    return
            if renderer.mid_frame:
                raise StreamBroken(self.job.id, JOB_CANCELLED)
            yield renderer.error(JOB_CANCELLED)[1]
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

    @property
    def mid_frame(self) -> bool:
        return False  # its frames are whole

    async def aclose(self) -> None:
        return None

    async def frames(self) -> AsyncGenerator[Frame, None]:
        for frame in self._frames[self._after:]:  # numbered from 1 when they were made
            yield frame
