"""A job's stream on the wire: its numbered frames (made by :mod:`proxy.service.stream`) as a
``text/event-stream`` response with keep-alive comments, counted in the open-streams gauge.

The keep-alive is one comment line *without* a blank line after it. Decoders keep the last
``id:`` they saw (as the SSE spec says) and the OpenAI SDK's, like httpx-sse's, dispatches an
event at every blank line once an id is known: ``: keep-alive`` followed by a blank line would
reach the SDK as an event with empty data, and ``json.loads("")`` raises. A lone comment line is
ignored by every decoder, wherever it falls between frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from proxy.service.gateway import Gateway
from proxy.service.stream import LiveStream


class KeepAlive(ServerSentEvent):
    """``: keep-alive`` on a line of its own, and nothing else (see the module's docstring)."""

    def encode(self) -> bytes:
        return b": keep-alive\n"


async def _counted(frames: AsyncIterator[bytes], gateway: Gateway) -> AsyncIterator[bytes]:
    """The SSE frames, counted in the open-streams gauge while they are written."""
    gateway.metrics.sse_streams.inc()
    try:
        async for frame in frames:
            yield frame
    finally:
        gateway.metrics.sse_streams.dec()


def sse_response(stream: LiveStream, headers: dict[str, str],
                 gateway: Gateway) -> EventSourceResponse:
    """``stream`` (opened: its job did not fail before streaming) as the response."""
    return EventSourceResponse(
        _counted(stream.frames(), gateway),
        headers=headers,
        sep="\n",
        ping=gateway.config.server.sse_keepalive,
        ping_message_factory=KeepAlive,
    )
