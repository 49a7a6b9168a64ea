"""The fake upstream and the bare relay, each run by ``bench.py --serve ...`` in its own uvicorn
process (uvloop, httptools, no access log) on 127.0.0.1.

Upstream, ``POST /v1/images/generations``, chosen by the request body:
- ``stream: true``: ``image_generation.partial_image`` then ``.completed`` (OpenAI's framing),
  timed by the prompt (``payloads.sse_prompt``); the partial carries the send-time stamp;
- ``n > 1``: four ~4 MB images (16 MB body); otherwise one ~4 KB image. Both pre-serialized.
- a ``bench-long`` prompt (``payloads.long_prompt``): a long job. Streamed: the headers at once,
  two ~100 KB partial images at 1/3 and 2/3 of its duration, the ~1.5 MB completed event at the
  end; as JSON: nothing until the end, then one ~1.5 MB image. The final image carries the
  time the upstream sent it (``payloads.stamped``). ``GET /stats`` answers, per tag, how many
  long jobs started and finished and how many were in flight at once (at most, and now).

Relay: Starlette + one aiohttp session and nothing else. It forwards the body, returns the
upstream's bytes, and relays a ``text/event-stream`` answer chunk by chunk as it arrives. Its
connector has no connection limit: it is the floor, and a floor parks no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from benchlib import payloads
from benchlib.fleet import raise_nofile

HOST = "127.0.0.1"
ROUTE = "/v1/images/generations"
JSON_HEADERS = {"content-type": "application/json"}


class LongStats:
    """Long jobs per tag: started, finished (final image sent), in flight now and at most."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, int]] = {}

    def begin(self, tag: str) -> dict[str, int]:
        row = self.tags.setdefault(tag, {"started": 0, "finished": 0, "in_flight": 0,
                                         "max_in_flight": 0})
        row["started"] += 1
        row["in_flight"] += 1
        row["max_in_flight"] = max(row["max_in_flight"], row["in_flight"])
        return row


class StampedBody:
    """A long JSON answer: the headers and the body only after ``seconds``, the body in two
    writes (the stamped head, then the shared rest) with its Content-Length."""

    def __init__(self, seconds: float, row: dict[str, int]) -> None:
        self.seconds, self.row = seconds, row

    async def __call__(self, scope: object, receive: object, send: Any) -> None:
        try:
            await asyncio.sleep(self.seconds)
            template, slot = payloads.long_json_template()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(template)).encode())]})
            head, rest = payloads.stamped(template, slot, time.monotonic_ns())
            await send({"type": "http.response.body", "body": head, "more_body": True})
            await send({"type": "http.response.body", "body": rest})
            self.row["finished"] += 1
        finally:
            self.row["in_flight"] -= 1


def upstream_app() -> Starlette:
    small = payloads.images_response(1, payloads.SMALL_RAW)
    large = payloads.images_response(payloads.LARGE_N, payloads.LARGE_RAW)
    stats = LongStats()

    async def long_stream(seconds: float, row: dict[str, int]) -> AsyncIterator[Any]:
        try:
            start = time.monotonic()
            frames = payloads.long_partial_frames()
            for i, frame in enumerate(frames):
                await asyncio.sleep(max(0.0, start + seconds * (i + 1) / (len(frames) + 1)
                                        - time.monotonic()))
                yield frame
            await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
            template, slot = payloads.long_completed_template()
            head, rest = payloads.stamped(template, slot, time.monotonic_ns())
            yield head
            yield rest
            row["finished"] += 1
        finally:
            row["in_flight"] -= 1

    async def stream(partial_raw: int, lead: float, gap: float) -> AsyncIterator[memoryview]:
        template, slot = payloads.partial_template(partial_raw)
        await asyncio.sleep(lead)
        frame = bytearray(template)  # copied before the stamp: after it, only the send
        frame[slot:slot + payloads.STAMP_LEN] = payloads.encode_stamp(time.monotonic_ns())
        yield memoryview(frame)
        await asyncio.sleep(gap)
        yield memoryview(payloads.completed_frame(payloads.SMALL_RAW))

    async def generations(request: Request) -> Any:
        body = orjson.loads(await request.body())
        long = payloads.parse_long_prompt(body.get("prompt"))
        if long is not None:
            seconds, tag = long
            row = stats.begin(tag)
            if body.get("stream"):
                return StreamingResponse(long_stream(seconds, row),
                                         media_type="text/event-stream")
            return StampedBody(seconds, row)
        if body.get("stream"):
            spec = payloads.parse_sse_prompt(body.get("prompt"))
            return StreamingResponse(stream(*spec), media_type="text/event-stream")
        answer = large if body.get("n", 1) > 1 else small
        return Response(answer, media_type="application/json")

    async def get_stats(_request: Request) -> Response:
        return JSONResponse(stats.tags)

    return Starlette(routes=[Route(ROUTE, generations, methods=["POST"]),
                             Route("/stats", get_stats, methods=["GET"])])


def relay_app(upstream_url: str) -> Starlette:
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # No limit (0): the long-jobs phase holds thousands of upstream calls at once, and a
        # floor must not park any of them in a pool.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            state["session"] = session
            yield

    async def forward(request: Request) -> Response:
        body = await request.body()
        upstream = await state["session"].post(upstream_url, data=body, headers=JSON_HEADERS)
        if upstream.content_type == "text/event-stream":

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream.content.iter_any():
                        yield chunk
                finally:
                    upstream.release()

            return StreamingResponse(chunks(), status_code=upstream.status,
                                     media_type="text/event-stream")
        try:
            data = await upstream.read()
        finally:
            upstream.release()
        return Response(data, status_code=upstream.status, media_type="application/json")

    return Starlette(routes=[Route(ROUTE, forward, methods=["POST"])], lifespan=lifespan)


def serve(kind: str, port: int, upstream_url: str | None) -> None:
    import uvicorn

    raise_nofile()
    if kind == "relay":
        assert upstream_url, "--upstream is required for a relay"
        app = relay_app(upstream_url)
    else:
        app = upstream_app()
    # A real upstream keeps idle connections well past uvicorn's 5 s default; with 5 s, pooled
    # connections die between phases and the first request of the next phase fails.
    # backlog: thousands of connections arrive within a second in the long-jobs phase.
    uvicorn.run(app, host=HOST, port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", timeout_keep_alive=120, backlog=4096)
