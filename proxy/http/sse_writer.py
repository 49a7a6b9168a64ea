"""A job's stream on the wire: its numbered frames (made by :mod:`proxy.service.stream`) as a
``text/event-stream`` response with keep-alive comments, counted in the open-streams gauge, and
where a client that lost its connection asks to resume (``Last-Event-ID``).

The keep-alive is one comment line *without* a blank line after it. Decoders keep the last
``id:`` they saw (as the SSE spec says) and the OpenAI SDK's, like httpx-sse's, dispatches an
event at every blank line once an id is known: ``: keep-alive`` followed by a blank line would
reach the SDK as an event with empty data, and ``json.loads("")`` raises. A lone comment line is
ignored by every decoder, wherever it falls between frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from proxy.core.errors import invalid_param
from proxy.service.gateway import Gateway
from proxy.service.replies import JobStream

LAST_EVENT_ID = "last-event-id"
_MAX_DIGITS = 18


class KeepAlive(ServerSentEvent):
    """``: keep-alive`` on a line of its own, and nothing else (see the module's docstring)."""

    def encode(self) -> bytes:
        return b": keep-alive\n"


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


async def _counted(frames: AsyncIterator[bytes], gateway: Gateway) -> AsyncIterator[bytes]:
    """The SSE frames, counted in the open-streams gauge while they are written."""
    gateway.metrics.sse_streams.inc()
    try:
        async for frame in frames:
            yield frame
    finally:
        gateway.metrics.sse_streams.dec()


def sse_response(stream: JobStream, headers: dict[str, str],
                 gateway: Gateway) -> EventSourceResponse:
    """``stream`` (opened: its job did not fail before streaming) as the response."""
    return EventSourceResponse(
        _counted(stream.frames(), gateway),
        headers=headers,
        sep="\n",
        ping=gateway.config.server.sse_keepalive,
        ping_message_factory=KeepAlive,
    )
