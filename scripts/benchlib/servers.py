"""The fake upstream and the bare relay, each run by ``bench.py --serve ...`` in its own uvicorn
process (uvloop, httptools, no access log) on 127.0.0.1.

Upstream, ``POST /v1/images/generations``, chosen by the request body:
- ``stream: true``: ``image_generation.partial_image`` then ``.completed`` (OpenAI's framing),
  timed by the prompt (``payloads.sse_prompt``); the partial carries the send-time stamp;
- ``n > 1``: four ~4 MB images (16 MB body); otherwise one ~4 KB image. Both pre-serialized.

Relay: Starlette + one aiohttp session and nothing else. It forwards the body, returns the
upstream's bytes, and relays a ``text/event-stream`` answer chunk by chunk as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from benchlib import payloads

HOST = "127.0.0.1"
ROUTE = "/v1/images/generations"
JSON_HEADERS = {"content-type": "application/json"}


def upstream_app() -> Starlette:
    small = payloads.images_response(1, payloads.SMALL_RAW)
    large = payloads.images_response(payloads.LARGE_N, payloads.LARGE_RAW)

    async def stream(partial_raw: int, lead: float, gap: float) -> AsyncIterator[memoryview]:
        template, slot = payloads.partial_template(partial_raw)
        await asyncio.sleep(lead)
        frame = bytearray(template)  # copied before the stamp: after it, only the send
        frame[slot:slot + payloads.STAMP_LEN] = payloads.encode_stamp(time.monotonic_ns())
        yield memoryview(frame)
        await asyncio.sleep(gap)
        yield memoryview(payloads.completed_frame(payloads.SMALL_RAW))

    async def generations(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if body.get("stream"):
            spec = payloads.parse_sse_prompt(body.get("prompt"))
            return StreamingResponse(stream(*spec), media_type="text/event-stream")
        answer = large if body.get("n", 1) > 1 else small
        return Response(answer, media_type="application/json")

    return Starlette(routes=[Route(ROUTE, generations, methods=["POST"])])


def relay_app(upstream_url: str) -> Starlette:
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The load tops out at 16 in flight; 64 leaves headroom without unbounded sockets.
        connector = aiohttp.TCPConnector(limit=64, limit_per_host=64)
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

    if kind == "relay":
        assert upstream_url, "--upstream is required for a relay"
        app = relay_app(upstream_url)
    else:
        app = upstream_app()
    # A real upstream keeps idle connections well past uvicorn's 5 s default; with 5 s, pooled
    # connections die between phases and the first request of the next phase fails.
    uvicorn.run(app, host=HOST, port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", timeout_keep_alive=120)
