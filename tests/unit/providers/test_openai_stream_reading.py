"""Reading an OpenAI-dialect stream (``proxy.providers.openai.adapter._decoded``): the chunks
aiohttp holds together are fed to the decoder one by one, as the same objects, never joined
first (a stream that falls behind holds several at each read, and a join copied them all);
the events that come out are the whole stream's, and the final image is passed on whole."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import aiohttp
import orjson

from proxy.providers.openai.adapter import _decoded, _final_event
from proxy.upstream.client import BATCH_PART_MIN
from proxy.upstream.sse import SSEDecoder, SSEMessage

IMAGE = base64.b64encode(os.urandom(600_000))  # ~800 KB of base64
PARTIAL = base64.b64encode(os.urandom(3_000))


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


STREAM = (_event("image_generation.partial_image", {
    "type": "image_generation.partial_image", "b64_json": PARTIAL.decode(),
    "partial_image_index": 0}) + _event("image_generation.completed", {
        "type": "image_generation.completed", "b64_json": IMAGE.decode(),
        "usage": {"total_tokens": 3}}))


class Protocol:
    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False


def _decoder() -> SSEDecoder:
    return SSEDecoder(passing=_final_event)


def _summary(outputs: list[SSEMessage | bytes]) -> tuple[list[tuple[str, bytes]], bytes]:
    """The events (name, data without the passed image's marker) and the image passed on."""
    events = [(o.event, o.data) for o in outputs if isinstance(o, SSEMessage)]
    image = b"".join(o for o in outputs if isinstance(o, bytes))
    return [(name, data.split(b'"b64_json"')[0]) for name, data in events], image


async def test_chunks_held_together_are_fed_one_by_one_as_they_are() -> None:
    protocol: Any = Protocol()
    content = aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    step = 3 * BATCH_PART_MIN
    chunks = [STREAM[at:at + step] for at in range(0, len(STREAM), step)]
    for chunk in chunks:  # all of them held at once: one batch
        content.feed_data(chunk)
    content.feed_eof()
    fed: list[bytes] = []
    decoder = _decoder()
    feed = decoder.feed_passing

    def recording(chunk: bytes) -> list[SSEMessage | bytes]:
        fed.append(chunk)
        return feed(chunk)

    decoder.feed_passing = recording  # type: ignore[method-assign]
    outputs = [out async for batch in _decoded(decoder, content) for out in batch]
    assert [id(chunk) for chunk in fed] == [id(chunk) for chunk in chunks]  # not joined
    events, image = _summary(outputs)
    assert events == _summary(list(SSEDecoder().feed(STREAM)))[0]  # read whole, not passed
    assert image == IMAGE  # the final image passed on, byte for byte
    # Chunks wholly inside the image are passed on as they are, not copied.
    assert any(out is chunk for out in outputs for chunk in chunks[1:-1])
