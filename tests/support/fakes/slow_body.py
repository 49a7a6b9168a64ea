"""A fake OpenAI upstream whose non-streamed answers are large and sent slowly, in chunks: it
stops halfway until the test lets it go on (or drops the connection there), and says what it
saw, so a test can tell what the gateway did while the upstream was still sending."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.support.fakes.openai_upstream import FakeOpenAI

CHUNK = 64 * 1024
# How long the fake waits halfway for a test that never lets it go on (it then goes on: a test
# that expected otherwise fails on what it sees, instead of hanging).
PATIENCE = 30.0


def noise_png_b64(side: int, seed: int) -> str:
    """A PNG that does not compress (``side`` 420: ~700 KB of base64)."""
    data = random.Random(seed).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), data).save(buffer, "PNG", compress_level=0)
    return base64.b64encode(buffer.getvalue()).decode()


IMAGES = [noise_png_b64(420, seed) for seed in range(2)]


@dataclass
class SlowBody(FakeOpenAI):
    # Drop the connection halfway instead of going on.
    drop: bool = False
    # Send a content-length (otherwise the answer is chunked).
    sized: bool = False
    # Answer as DALL-E 2 does: images only (no revised_prompt, no usage or settings).
    plain: bool = False
    # Set when the answer is halfway and waits; the test sets ``go_on`` to let it finish.
    halfway: threading.Event = field(default_factory=threading.Event)
    go_on: threading.Event = field(default_factory=threading.Event)
    # Set when the whole answer was sent / when its reader closed the connection early.
    finished: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.drop = self.sized = self.plain = False
        for flag in (self.halfway, self.go_on, self.finished, self.abandoned):
            flag.clear()
        self.requests.clear()

    def read_meanwhile(self, response: Any) -> dict[str, Any]:
        """Read a gateway's streamed ``response`` to a request this fake answers: its first
        bytes must come while the fake waits halfway (the gateway did not wait for the end);
        then the fake goes on, and the whole answer is parsed."""
        chunks = response.iter_raw()
        first = next(chunks)
        assert self.halfway.is_set() and not self.finished.is_set()
        assert first.startswith(b'{"created":')
        self.go_on.set()
        body = orjson.loads(first + b"".join(chunks))
        assert self.finished.is_set()
        return body

    def answer(self, n: int) -> bytes:
        """An OpenAI answer with ``n`` large images; ``revised_prompt`` after each image and
        ``usage`` after all of them, as DALL-E 3 and GPT image models place them."""
        if self.plain:
            return orjson.dumps({"created": 1, "data": [{"b64_json": IMAGES[i % len(IMAGES)]}
                                                        for i in range(n)]})
        data = [{"b64_json": IMAGES[i % len(IMAGES)], "revised_prompt": f"picture {i}"}
                for i in range(n)]
        return orjson.dumps({"created": 1, "data": data, "size": "1024x1024",
                             "quality": "high", "background": "opaque", "output_format": "png",
                             "usage": {"input_tokens": 12, "output_tokens": 272,
                                       "total_tokens": 284,
                                       "input_tokens_details": {"text_tokens": 12,
                                                                "image_tokens": 0}}})

    async def _generate(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        if body.get("stream"):
            return await super()._generate(request)
        raw = self.answer(int(body.get("n", 1)))
        headers = {"content-length": str(len(raw))} if self.sized else {}
        return StreamingResponse(self._slowly(raw), media_type="application/json",
                                 headers=headers)

    def _edit_answer(self, body: dict[str, Any], n: int) -> Response:
        return StreamingResponse(self._slowly(self.answer(n)), media_type="application/json")

    async def _slowly(self, raw: bytes) -> Any:
        try:
            half = len(raw) // 2
            for start in range(0, half, CHUNK):
                yield raw[start:min(start + CHUNK, half)]
            self.halfway.set()
            if self.drop:
                raise ConnectionResetError("the fake upstream drops the connection")
            for _ in range(int(PATIENCE / 0.01)):
                if self.go_on.is_set():
                    break
                await asyncio.sleep(0.01)
            for start in range(half, len(raw), CHUNK):
                yield raw[start:start + CHUNK]
            self.finished.set()
        except (asyncio.CancelledError, GeneratorExit):
            self.abandoned.set()
            raise
