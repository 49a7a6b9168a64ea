"""A loopback web server for the image fetcher's tests: images, non-images, huge and slow bodies,
redirects; it records every request it receives, so a test can prove one never arrived."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


def _encode(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


PNG = _encode("PNG")
JPEG = _encode("JPEG")
WEBP = _encode("WEBP")
GIF = _encode("GIF")
HUGE = 1024 * 1024  # bytes served by /huge.png and /stream.png


@dataclass
class FetchTarget:
    requests: list[str] = field(default_factory=list)  # "GET /a.png?x=1", in arrival order

    @property
    def paths(self) -> list[str]:
        return [line.split(" ", 1)[1].split("?")[0] for line in self.requests]

    def build(self) -> Starlette:
        async def record(request: Request) -> None:
            query = f"?{request.url.query}" if request.url.query else ""
            self.requests.append(f"{request.method} {request.url.path}{query}")

        async def png(request: Request) -> Response:
            await record(request)
            return Response(PNG, media_type="image/png")

        async def jpeg(request: Request) -> Response:
            await record(request)
            return Response(JPEG, media_type="image/jpeg")

        async def gif(request: Request) -> Response:
            await record(request)
            return Response(GIF, media_type="image/gif")

        async def octet(request: Request) -> Response:
            await record(request)
            return Response(PNG, media_type="application/octet-stream")

        async def text(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("hello, I am not an image")

        async def liar(request: Request) -> Response:
            await record(request)
            return Response(b"<html>not a png</html>", media_type="image/png")

        async def huge(request: Request) -> Response:
            await record(request)
            return Response(PNG[:16] + bytes(HUGE - 16), media_type="image/png")

        async def stream(request: Request) -> Response:
            await record(request)

            async def body():
                yield PNG[:16]
                for _ in range(HUGE // 16384):
                    yield bytes(16384)

            return StreamingResponse(body(), media_type="image/png")  # chunked: no length

        async def not_found(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("secret body the client must not see", status_code=404)

        async def chain(request: Request) -> Response:
            await record(request)
            left = int(request.path_params["n"])
            return RedirectResponse("/a.png" if left == 0 else f"/redirect/{left - 1}", 302)

        async def to(request: Request) -> Response:
            await record(request)
            return RedirectResponse(request.query_params["url"], 302)

        async def slow(request: Request) -> Response:
            await record(request)
            # Until the client gives up (or 2 s): lets the server shut down promptly.
            async def disconnected() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass

            try:
                await asyncio.wait_for(disconnected(), 2)
            except TimeoutError:
                pass
            return Response(PNG, media_type="image/png")

        return Starlette(routes=[
            Route("/a.png", png), Route("/b.jpg", jpeg), Route("/a.gif", gif),
            Route("/octet.png", octet),
            Route("/text", text), Route("/liar.png", liar), Route("/huge.png", huge),
            Route("/stream.png", stream), Route("/404", not_found),
            Route("/redirect/{n:int}", chain), Route("/to", to), Route("/slow", slow),
        ])
