"""The replay buffer of a job with several readers: what it keeps (bounded), and readers that
join late, resume from an index, or wait for what comes next."""

from __future__ import annotations

import asyncio

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Image, PartialImage, Progress
from proxy.jobs.feed import JobFeed


async def read(feed: JobFeed, start: int = 0) -> list[Event]:
    return [event async for event in feed.follow(start)]


async def test_keeps_what_a_late_reader_needs_and_no_more() -> None:
    feed = JobFeed(partial_images=2)
    for event in (Progress(0, stage="queued"), Progress(10), PartialImage(0, 0, "p0"),
                  Progress(50), PartialImage(0, 1, "p1"), PartialImage(0, 2, "extra"),
                  Image(0, b64_json="final"), Progress(100), Completed()):
        feed.push(event)
    # The first progress (a stream commits on it), the partials asked for, the image, the end.
    assert feed.events == [Progress(0, stage="queued"), PartialImage(0, 0, "p0"),
                           PartialImage(0, 1, "p1"), Image(0, b64_json="final"), Completed()]
    assert feed.ended and isinstance(feed.terminal, Completed)
    feed.push(PartialImage(0, 3, "after the end"))
    assert len(feed.events) == 5
    assert await read(feed) == feed.events  # a reader after the end gets all of it
    assert await read(feed, 3) == feed.events[3:]


async def test_readers_follow_live_from_where_they_ask() -> None:
    feed = JobFeed(partial_images=3)
    feed.push(PartialImage(0, 0, "p0"))
    early = asyncio.create_task(read(feed))
    resumed = asyncio.create_task(read(feed, 1))
    await asyncio.sleep(0.01)
    assert not early.done() and not resumed.done(), "they wait for the job's end"
    feed.push(PartialImage(0, 1, "p1"))
    await asyncio.sleep(0.01)
    late = asyncio.create_task(read(feed))
    error = GatewayError(400, "refused", code="content_policy_violation")
    feed.push(Failed(error))
    everything = [PartialImage(0, 0, "p0"), PartialImage(0, 1, "p1"), Failed(error)]
    assert await asyncio.wait_for(early, 1) == everything
    assert await asyncio.wait_for(late, 1) == everything
    assert await asyncio.wait_for(resumed, 1) == everything[1:]


async def test_a_stopped_run_ends_its_readers_without_a_terminal_event() -> None:
    feed = JobFeed(partial_images=1)
    feed.push(Progress(5))
    reader = asyncio.create_task(read(feed))
    waiter = asyncio.create_task(feed.finished())
    await asyncio.sleep(0.01)
    feed.close()  # cancelled
    assert await asyncio.wait_for(reader, 1) == [Progress(5)]
    await asyncio.wait_for(waiter, 1)
    assert feed.ended and feed.terminal is None
