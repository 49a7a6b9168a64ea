"""A stream's final image is written to its client while the upstream still sends it: the
gateway holds neither the upstream's ``completed`` event nor its own frame whole (a 1.5 MB image
per stream, thousands of streams). The frame comes out the same as a whole one would; an upstream
that breaks inside the image gets the connection aborted (the frame cannot be finished, nor an
``error`` event written inside it), never a ``completed`` event with half an image."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from tests.e2e.generations.test_large_images import BIG
from tests.support.clients import sdk
from tests.support.fakes import openai_upstream
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.stack import Stack, upstream_and_gateway

# How far into the final image the upstream stops until the test lets it go on.
FIRST_PART = 100_000


@dataclass
class HeldFinal(FakeOpenAI):
    """Sends the ``completed`` event up to :data:`FIRST_PART` bytes into its image, waits for
    ``go``, then sends the rest (``then="finish"``), drops the connection (``"drop"``) or goes
    on with an escaped character inside the base64 (``"escape"``)."""

    then: str = "finish"
    held: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)

    async def _frames(self, frames: list[bytes]):  # type: ignore[override]
        *before, last = frames
        for data in before:
            yield data
        cut = last.index(b'"b64_json":"') + len(b'"b64_json":"') + FIRST_PART
        yield last[:cut]
        self.held.set()
        for _ in range(3000):  # bounded: 30 s
            if self.go.is_set():
                break
            await asyncio.sleep(0.01)
        if self.then == "drop":
            raise ConnectionResetError("fake upstream drops the connection")
        if self.then == "escape":
            yield b"AAAA\\/AAAA"
        yield last[cut:]


def _yaml(url: str) -> str:
    return f"""models:
  - {{name: big, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
     api_key: {API_KEY}}}
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack[HeldFinal]]:
    monkeypatch.setattr(openai_upstream, "png_b64", lambda *_: BIG)
    with upstream_and_gateway(HeldFinal(), _yaml) as stack:
        yield stack


def _events(raw: bytes) -> list[dict]:
    frames = [f for f in raw.split(b"\n\n") if b"data: " in f]
    return [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]


def _read_into_the_image(chunks: Iterator[bytes], received: bytearray) -> None:
    """Read until the final frame's head and half of what the upstream sent of its image."""
    begun = b'"b64_json":"'
    while True:
        received += next(chunks)
        head = received.rfind(b"event: image_generation.completed")
        if head >= 0 and (at := received.find(begun, head)) >= 0 and \
                len(received) - at - len(begun) >= FIRST_PART // 2:
            return


def test_the_final_image_reaches_the_client_while_the_upstream_still_sends_it(
        stack: Stack[HeldFinal]) -> None:
    received = bytearray()
    with httpx.stream("POST", f"{stack.gateway.url}/v1/images/generations", timeout=30,
                      json={"model": "big", "prompt": "p", "stream": True,
                            "partial_images": 1}) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_bytes()
        _read_into_the_image(chunks, received)
        # The client has the frame's head and half of its image, and the upstream has not
        # sent the rest: nothing waited for the upstream's event to end.
        assert stack.fake.held.is_set() and not stack.fake.go.is_set()
        stack.fake.go.set()
        for chunk in chunks:
            received += chunk
    partial, completed = _events(bytes(received))
    assert partial["type"] == "image_generation.partial_image" and partial["b64_json"] == BIG
    assert completed["type"] == "image_generation.completed"
    assert completed["b64_json"] == BIG
    assert completed["usage"]["total_tokens"] > 0 and completed["size"] == "1024x1024"
    assert b"id: 2\nevent: image_generation.completed\n" in received

    # The official SDK reads the same frame.
    stack.fake.go.set()
    events = list(sdk(stack.gateway).images.generate(model="big", prompt="p", stream=True))
    assert events[-1].type == "image_generation.completed" and events[-1].b64_json == BIG
    assert events[-1].usage is not None


@pytest.mark.parametrize("then", ["drop", "escape"])
def test_an_upstream_that_breaks_inside_the_image_aborts_the_connection(
        stack: Stack[HeldFinal], then: str, caplog: pytest.LogCaptureFixture) -> None:
    stack.fake.then = then
    received = bytearray()
    with caplog.at_level(logging.WARNING), pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{stack.gateway.url}/v1/images/generations", timeout=30,
                          json={"model": "big", "prompt": "p", "stream": True}) as answer:
            assert answer.status_code == 200
            chunks = answer.iter_bytes()
            _read_into_the_image(chunks, received)
            stack.fake.go.set()
            for chunk in chunks:
                received += chunk
    # What came is the frame's head and some of the image: no completed event, no error
    # event inside the frame, no end of the answer.
    assert b"event: image_generation.completed\n" in received
    assert received.count(b"\n\n") == 0 and b"event: error" not in received
    assert "failed inside a frame it was writing (upstream_" in caplog.text
    # No traceback of the gateway's (the fake upstream's own drop is logged by its server).
    assert not [record for record in caplog.records if record.exc_info and any(
        "/proxy/" in frame.filename for frame in traceback.extract_tb(record.exc_info[2]))]
    # The gateway goes on serving.
    stack.fake.then = "finish"
    events = list(sdk(stack.gateway).images.generate(model="big", prompt="p", stream=True))
    assert events[-1].b64_json == BIG


@pytest.fixture
def quick_keepalive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack[HeldFinal]]:
    monkeypatch.setattr(openai_upstream, "png_b64", lambda *_: BIG)
    with upstream_and_gateway(HeldFinal(), lambda url: "server: {sse_keepalive: 0.02}\n"
                              + _yaml(url)) as stack:
        yield stack


def test_no_keepalive_comment_is_written_inside_the_frame(
        quick_keepalive: Stack[HeldFinal]) -> None:
    """The upstream is silent inside the image for many keep-alive periods: the comment that
    would keep the connection alive must wait for the frame's end (inside the data line it
    would end the line, and the event with it)."""
    stack = quick_keepalive
    received = bytearray()
    with httpx.stream("POST", f"{stack.gateway.url}/v1/images/generations", timeout=30,
                      json={"model": "big", "prompt": "p", "stream": True}) as answer:
        chunks = answer.iter_bytes()
        _read_into_the_image(chunks, received)
        time.sleep(0.2)  # ten keep-alive periods of silence inside the frame
        stack.fake.go.set()
        for chunk in chunks:
            received += chunk
    frame = received[received.index(b"event: image_generation.completed"):]
    assert b"keep-alive" not in frame
    (completed,) = _events(bytes(frame))
    assert completed["b64_json"] == BIG


def test_a_client_that_leaves_inside_the_image_takes_its_job_with_it(
        stack: Stack[HeldFinal]) -> None:
    """Half an image read, the client hangs up: the upstream's stream is closed and the job
    ends cancelled (a provider bills a finished image, not a closed request)."""
    with httpx.stream("POST", f"{stack.gateway.url}/v1/images/generations", timeout=30,
                      json={"model": "big", "prompt": "p", "stream": True}) as answer:
        job_id = answer.headers["x-request-id"]
        _read_into_the_image(answer.iter_bytes(), bytearray())
    # Leaving the block unread closes the connection.
    status = None
    for _ in range(500):  # bounded: 10 s
        job = httpx.get(f"{stack.gateway.url}/v1/images/jobs/{job_id}", timeout=10)
        status = job.json()["status"] if job.status_code == 200 else None
        if stack.fake.stream_abandoned and status == "cancelled":
            break
        time.sleep(0.02)
    assert stack.fake.stream_abandoned and status == "cancelled"
    assert not stack.fake.go.is_set()  # the upstream was still inside the image
