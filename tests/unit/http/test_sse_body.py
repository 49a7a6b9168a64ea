"""The SSE answer's writer (``proxy.http.sse_writer.SSEBody``) against a hand-driven ASGI server:
keep-alive comments fill silences and only those (never inside an image frame's pieces, even
while a slow client holds a write up, nor after the end), a client that leaves ends the job's
stream, and HEAD gets the headers alone.

Time is the event loop's: the keep-alive timer and the stream's silences are loop timers, so
their order does not depend on how fast the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from proxy.core.errors import GatewayError
from proxy.http.sse_writer import KEEP_ALIVE, SSEBody
from proxy.service.stream import Frame

PING = 0.01
SILENCE = 10 * PING
FIRST = b"id: 1\nevent: e\ndata: {}\n\n"
IMAGE = (b'id: 2\nevent: e\ndata: {"b64_json":"', b"QUJD" * 1000, b'"}\n\n')


class Stream:
    """A job's stream: one frame, a silence, an image frame in pieces, then the end (or, with
    ``endless``, a silence that never ends)."""

    def __init__(self, endless: bool = False) -> None:
        self.endless = endless
        self.started = False
        self.frames_closed = False
        self.closed = False
        self.mid_frame = False

    async def open(self) -> GatewayError | None:
        return None

    async def frames(self) -> AsyncGenerator[Frame, None]:
        self.started = True
        try:
            yield FIRST
            await asyncio.sleep(SILENCE)
            if self.endless:
                await asyncio.Event().wait()
            yield IMAGE
        finally:
            self.frames_closed = True

    async def aclose(self) -> None:
        self.closed = True


class Server:
    """The ASGI side: records what is sent; the image's base64 piece is held up (a slow
    client) for a while; ``leave`` makes the client disconnect."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.left = asyncio.Event()
        self.kept_alive = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message.get("body") == KEEP_ALIVE:
            self.kept_alive.set()
        if message.get("body") == IMAGE[1]:
            await asyncio.sleep(SILENCE)  # flow control: the client reads slowly

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def scope(method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/v1/images/generations", "headers": []}


def gauge() -> Gauge:
    return Gauge("streams", "open streams", registry=CollectorRegistry())


def value(streams: Gauge) -> float:
    return next(iter(streams.collect())).samples[0].value


async def test_keep_alives_fill_silences_between_frames_only() -> None:
    server, stream, streams = Server(), Stream(), gauge()
    body = SSEBody(stream, {"x-request-id": "r1"}, keepalive=PING, gauge=streams)
    await body(scope(), server.receive, server.send)

    start = server.sent[0]
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert start["status"] == 200
    assert headers == {"x-request-id": "r1", "cache-control": "no-store",
                       "connection": "keep-alive", "x-accel-buffering": "no",
                       "content-type": "text/event-stream; charset=utf-8"}
    bodies = server.bodies()
    assert bodies[0] == FIRST
    first_image = bodies.index(IMAGE[0])
    assert KEEP_ALIVE in bodies[1:first_image], "the silence was filled"
    assert set(bodies[1:first_image]) == {KEEP_ALIVE}
    # The slow write of the image's base64 is no silence, and no comment splits the frame.
    assert bodies[first_image:] == [*IMAGE, b""]
    assert server.sent[-1]["more_body"] is False
    assert stream.frames_closed and stream.closed
    assert value(streams) == 0


async def test_a_client_that_leaves_ends_the_stream() -> None:
    server, stream, streams = Server(), Stream(endless=True), gauge()
    body = SSEBody(stream, {}, keepalive=PING, gauge=streams)
    writing = asyncio.create_task(body(scope(), server.receive, server.send))
    await asyncio.wait_for(server.kept_alive.wait(), 10)
    assert value(streams) == 1
    server.left.set()
    await asyncio.wait_for(writing, 10)
    assert stream.frames_closed and stream.closed, "the job's stream was closed"
    assert all(m.get("more_body", True) for m in server.sent), "no end for a client gone"
    assert value(streams) == 0


async def test_head_gets_the_headers_and_no_stream() -> None:
    server, stream = Server(), Stream()
    await SSEBody(stream, {}, keepalive=PING, gauge=gauge())(scope("HEAD"), server.receive,
                                                             server.send)
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]
    assert server.bodies() == [b""]
    assert not stream.started and stream.closed
