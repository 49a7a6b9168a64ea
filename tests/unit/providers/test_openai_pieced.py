"""A large OpenAI answer's events as its batches arrive (``proxy.providers.openai.pieced``): what
one batch brings of an image is one ``ImagePiece`` whose parts are the chunks read (the same
objects: nothing joined), the items and the end follow; an answer declined in the middle of a
batch leaves every byte read with the scanner."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import orjson

from proxy.core.events import Event, Image, ImagePiece
from proxy.providers.openai.adapter import body_completed, item_image
from proxy.providers.openai.pieced import pieced_events
from proxy.upstream.pieces import ImageScanner

START = 32 * 1024
IMAGES = [base64.b64encode(os.urandom(300_000)), base64.b64encode(os.urandom(200_000))]
ANSWER = orjson.dumps({"created": 1, "data": [{"b64_json": IMAGES[0].decode()},
                                              {"b64_json": IMAGES[1].decode()}],
                       "usage": {"total_tokens": 3}})


def _cut(raw: bytes, cuts: list[int]) -> list[bytes]:
    return [raw[start:end] for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


async def _events(batches: list[list[bytes]], scanner: ImageScanner) -> list[Event]:
    async def arriving() -> AsyncIterator[list[bytes]]:
        for batch in batches:
            yield batch

    return [event async for event in pieced_events(scanner, arriving(), item_image,
                                                   body_completed)]


async def test_what_a_batch_brings_of_an_image_is_one_piece_of_the_chunks_read() -> None:
    first = ANSWER.index(IMAGES[0])
    chunks = _cut(ANSWER, [first + 100_000, first + 200_000, first + 300_000, first + 350_000])
    events = await _events([chunks[:1], chunks[1:3], chunks[3:]], ImageScanner(start=START))
    pieces = [event for event in events if isinstance(event, ImagePiece)]
    # The second batch is two chunks inside image 0: one piece, the chunks themselves; the
    # third ends image 0 (a piece of two parts) and brings image 1.
    assert [(piece.index, len(piece.parts)) for piece in pieces] == [(0, 1), (0, 2), (0, 2),
                                                                     (1, 1)]
    assert pieces[1].parts[0] is chunks[1] and pieces[1].parts[1] is chunks[2]
    images = {0: b"", 1: b""}
    for piece in pieces:
        images[piece.index] += b"".join(piece.parts)
    assert images == {0: IMAGES[0], 1: IMAGES[1]}
    order = [(type(event).__name__, getattr(event, "index", None)) for event in events]
    assert order == [("ImagePiece", 0)] * 3 + [("Image", 0), ("ImagePiece", 1), ("Image", 1),
                                              ("Completed", None)]
    assert all(event.pieced for event in events if isinstance(event, Image))


async def test_an_answer_declined_inside_a_batch_leaves_every_byte_read() -> None:
    answer = ANSWER.replace(IMAGES[0][1000:1004], b"\\/\\/")  # not its base64 verbatim
    chunks = _cut(answer, [1024, 4096, 8192])
    scanner = ImageScanner(start=START)
    assert await _events([chunks[:1], chunks[1:3]], scanner) == []
    assert scanner.declined and scanner.raw == b"".join(chunks[:3])
