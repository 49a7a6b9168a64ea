"""Reading a large upstream answer in batches (``proxy.upstream.client.chunk_batches``) from a real
aiohttp ``StreamReader``: what is held is taken at once, as the chunks aiohttp was given (the
same objects: no copy), small neighbours joined; a batch never waits for more; the body's end
(and an HTTP chunk's end with nothing after it) is no batch."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from proxy.upstream.client import BATCH_PART_MIN, chunk_batches


class Protocol:
    """What a StreamReader asks of its connection: connected, reading paused and resumed."""

    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False


def reader() -> aiohttp.StreamReader:
    protocol: Any = Protocol()
    return aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


BIG = [bytes([65 + n]) * (3 * BATCH_PART_MIN) for n in range(3)]


async def test_what_is_held_is_one_batch_of_the_chunks_themselves() -> None:
    content = reader()
    for chunk in BIG:
        content.feed_data(chunk)
    batches = chunk_batches(content)
    batch = await anext(batches)
    assert [id(part) for part in batch] == [id(chunk) for chunk in BIG]
    content.feed_data(BIG[0])
    content.feed_eof()
    assert await anext(batches) == [BIG[0]]
    assert [batch async for batch in batches] == []


async def test_a_batch_never_waits_for_more() -> None:
    content = reader()
    batches = chunk_batches(content)
    content.feed_data(BIG[0])
    assert await asyncio.wait_for(anext(batches), 1) == [BIG[0]]
    waiting: asyncio.Task[Any] = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing held: the next batch is the next chunk
    content.feed_data(BIG[1])
    assert await asyncio.wait_for(waiting, 1) == [BIG[1]]
    content.feed_eof()
    assert [batch async for batch in batches] == []


async def test_small_http_chunks_next_to_each_other_are_joined() -> None:
    content = reader()
    content.begin_http_chunk_receiving()
    sent = [b"a" * 1000, b"b" * 2000, BIG[0], b"c" * 10, b"d" * 20, BIG[1], b"e" * 5]
    for chunk in sent:
        content.feed_data(chunk)
        content.end_http_chunk_receiving()
    content.end_http_chunk_receiving()  # an HTTP chunk's end with no data after the last one
    content.feed_eof()
    batches = [batch async for batch in chunk_batches(content)]
    assert batches == [[b"a" * 1000 + b"b" * 2000, BIG[0], b"c" * 10 + b"d" * 20, BIG[1],
                         b"e" * 5]]
    assert batches[0][1] is BIG[0] and batches[0][3] is BIG[1]


async def test_an_error_of_the_connection_is_raised() -> None:
    content = reader()
    content.feed_data(BIG[0])
    batches = chunk_batches(content)
    assert await anext(batches) == [BIG[0]]
    content.set_exception(aiohttp.ClientPayloadError("cut"))
    try:
        await anext(batches)
    except aiohttp.ClientPayloadError:
        pass
    else:
        raise AssertionError("the connection's error was not raised")


async def test_a_body_partly_read_before_ends_without_spinning() -> None:
    content = reader()
    content.feed_data(b"x" * 10)
    assert await content.read(4) == b"xxxx"  # read elsewhere: not this reader's to count
    content.feed_data(BIG[0])
    content.feed_eof()
    batches = [batch async for batch in chunk_batches(content)]
    assert b"".join(part for batch in batches for part in batch) == b"x" * 6 + BIG[0]
