"""A job's stream on the wire: its numbered frames (made by :mod:`proxy.service.stream`) as a
``text/event-stream`` response with keep-alive comments, counted in the open-streams gauge, and
where a client that lost its connection asks to resume (``Last-Event-ID``).

The keep-alive is one comment line *without* a blank line after it. Decoders keep the last
``id:`` they saw (as the SSE spec says) and the OpenAI SDK's, like httpx-sse's, dispatches an
event at every blank line once an id is known: ``: keep-alive`` followed by a blank line would
reach the SDK as an event with empty data, and ``json.loads("")`` raises. A lone comment line is
ignored by every decoder, wherever it falls between frames.

The response is written by the request's own task, frame by frame as the job makes them. A
stream costs no task of its own beyond the request's and the one that watches for the client
leaving (:class:`~proxy.http.disconnect.ClientWatch`, as the JSON answers have): the keep-alive
is a timer of the event loop (:class:`KeepAlive`), re-armed only when it comes due, and a task
exists only while a keep-alive comment is being written. (sse-starlette, which wrote streams
before, ran a task group of four tasks per stream, a cancel scope per write, and left each
stream's cancelled tasks in reference cycles with their tracebacks.) A stream ends when its job
does: the gateway's own shutdown ends running jobs after its grace, with an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.core.errors import invalid_param
from proxy.http.disconnect import ClientGone, ClientWatch
from proxy.http.responses import abort_answer
from proxy.observability.metrics import Gauge
from proxy.service.gateway import Gateway
from proxy.service.replies import JobStream
from proxy.service.stream import Frame, StreamBroken

LAST_EVENT_ID = "last-event-id"
_MAX_DIGITS = 18
KEEP_ALIVE = b": keep-alive\n"  # a lone comment line (see the module's docstring)
# What every stream is answered with besides the caller's headers (and its content type),
# as sse-starlette sent it: the caller may choose its caching, not the rest.
CACHE_CONTROL = {"cache-control": "no-store"}
STREAM_HEADERS = {"connection": "keep-alive", "x-accel-buffering": "no"}


def last_event_id(request: Request) -> int:
    """The number of the last frame the client received (``Last-Event-ID``; 0 without it):
    the stream resumes after it. 400 naming the header when it is not such a number."""
    sent = request.headers.get(LAST_EVENT_ID)
    if sent is None:
        return 0
    value = sent.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
        raise invalid_param(LAST_EVENT_ID, f"Invalid '{LAST_EVENT_ID}' header: it must be the "
                            "id of a stream's event (a whole number).", code="invalid_value")
    return int(value)


class KeepAlive:
    """``: keep-alive`` after ``every`` seconds without a write, from one timer of the loop.

    The writer notes each write (:meth:`wrote`: two attribute stores, no timer touched); the
    timer, when it fires, sends the comment if the stream has been silent that long, and is
    armed again for when the stream will next have been silent that long. The comment is sent
    by a short task of its own (the timer cannot wait for a write), never while a frame is
    being written, and the writer waits for it before the next frame (:meth:`settled`): a
    comment is never written inside a frame or after the last one."""

    __slots__ = ("_every", "_handle", "_loop", "_send", "_task", "last", "writing")

    def __init__(self, send: Send, every: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._send = send
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self.last = self._loop.time()
        self.writing = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self.last + every,
                                                                      self._due)

    def wrote(self) -> None:
        self.writing = False
        self.last = self._loop.time()

    def _due(self) -> None:
        now = self._loop.time()
        silent_until = self.last + self._every
        if now < silent_until:
            self._handle = self._loop.call_at(silent_until, self._due)
            return
        if not self.writing and self._task is None:  # a write under way is no silence
            self._task = self._loop.create_task(self._comment())
        self._handle = self._loop.call_at(now + self._every, self._due)

    async def _comment(self) -> None:
        try:
            await self._send({"type": "http.response.body", "body": KEEP_ALIVE,
                              "more_body": True})
            self.last = self._loop.time()
        finally:
            self._task = None

    async def settled(self) -> None:
        """Once no comment is being written (the writer then writes its frame)."""
        if self._task is not None:
            await asyncio.shield(self._task)
        self.writing = True

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None:
            self._task.cancel()


class SSEBody(Response):
    """The frames as a ``text/event-stream`` answer (see the module's docstring). The frames
    are closed however the answer ends: a client that leaves stops its reading of the job."""

    media_type = "text/event-stream"

    def __init__(self, stream: JobStream, headers: Mapping[str, str], *, keepalive: float,
                 gauge: Gauge, watch: ClientWatch | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.stream = stream
        self.watch = watch  # the request's, when its endpoint watched already
        self.keepalive = keepalive
        self.gauge = gauge
        self.init_headers({**CACHE_CONTROL, **headers, **STREAM_HEADERS})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if scope.get("method") == "HEAD":  # headers only: the stream never starts
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            self.gauge.inc()
            frames = self.stream.frames()
            try:
                watch = self.watch or ClientWatch(Request(scope, receive))
                if await self._write(frames, watch, send):
                    await send({"type": "http.response.body", "body": b"",
                                "more_body": False})
            except StreamBroken as broken:  # a frame begun piece by piece: unfinishable
                abort_answer(scope, broken.job_id, broken.error, "inside a frame it was writing")
            finally:
                self.gauge.dec()
                await frames.aclose()
        finally:
            await self.stream.aclose()

    async def _write(self, frames: AsyncGenerator[Frame, None], watch: ClientWatch,
                     send: Send) -> bool:
        """Every frame as it comes, kept alive while none does; False if the client left."""
        keepalive = KeepAlive(send, self.keepalive)
        try:
            async with watch:
                async for frame in frames:
                    await keepalive.settled()
                    if isinstance(frame, bytes):
                        await send({"type": "http.response.body", "body": frame,
                                    "more_body": True})
                    else:  # an image's frame: its pieces, the image not copied into one
                        for piece in frame:
                            await send({"type": "http.response.body", "body": piece,
                                        "more_body": True})
                    del frame  # a 1.5 MB image is not held while the next one is awaited
                    if not self.stream.mid_frame:  # no comment inside a frame's data line
                        keepalive.wrote()
                await keepalive.settled()
        except ClientGone:
            return False
        finally:
            keepalive.stop()
        return True


def sse_response(stream: JobStream, headers: dict[str, str], gateway: Gateway,
                 watch: ClientWatch | None = None) -> SSEBody:
    """``stream`` (opened: its job did not fail before streaming) as the response, watched by
    ``watch`` (the request's) or a watch of its own."""
    return SSEBody(stream, headers, keepalive=gateway.config.server.sse_keepalive,
                   gauge=gateway.metrics.sse_streams, watch=watch)
