"""Runs: an inline run (an attached JSON job) is read in its reader's task, counted until read to
its end, ended by a shutdown with an error its reader still receives, and cancelled with it when
the reader goes away; a run in a task of its own behaves the same to its reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Progress
from proxy.jobs.feed import JobFeed
from proxy.jobs.runs import Runs

SHUTDOWN = GatewayError(503, "stopping", type="server_error", code="server_shutting_down")


def _job() -> Any:
    return SimpleNamespace(id="job-1", aborted=None)


class Source:
    """A job's events: a progress event, then (once released) its end; records how it ended
    and in which task it ran."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.tasks: set[asyncio.Task[Any] | None] = set()
        self.outcome = "running"
        self.finished_at_end = False

    async def events(self) -> AsyncGenerator[Event, None]:
        self.tasks.add(asyncio.current_task())
        try:
            yield Progress(10)
            await self.release.wait()
            yield Completed()
            self.outcome = "completed"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        finally:
            self.tasks.add(asyncio.current_task())
            self.finished_at_end = True  # run_job's finisher runs here


@pytest.mark.parametrize("inline", [True, False])
async def test_read_to_the_end(inline: bool) -> None:
    runs, source, ended = Runs(), Source(), []
    run = runs.start(_job(), source.events(), on_end=lambda: ended.append(True), inline=inline)
    reader = asyncio.current_task()
    got: list[Event] = []
    events = run.stream()
    got.append(await anext(events))
    assert not ended and len(runs.active) == 1
    source.release.set()
    got += [event async for event in events]
    await asyncio.sleep(0)  # a run of its own winds down in its task
    assert [type(e) for e in got] == [Progress, Completed]
    assert ended == [True] and source.outcome == "completed" and source.finished_at_end
    assert (source.tasks == {reader}) is inline  # inline: no task of its own
    await asyncio.wait_for(runs.idle(), 1)


@pytest.mark.parametrize("inline", [True, False])
async def test_shutdown_aborts_with_an_error_the_reader_receives(inline: bool) -> None:
    runs, source, ended = Runs(), Source(), []
    job = _job()
    run = runs.start(job, source.events(), on_end=lambda: ended.append(True), inline=inline)

    async def read() -> list[Event]:
        got = [event async for event in run.stream()]
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # not left cancelled
        await asyncio.sleep(0)
        return got

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    assert runs.abort_all(SHUTDOWN) == 1
    got = await asyncio.wait_for(reader, 1)
    assert isinstance(got[0], Progress) and isinstance(got[-1], Failed)
    assert got[-1].error is SHUTDOWN and job.aborted is SHUTDOWN
    assert ended == [True] and source.outcome == "cancelled"
    await asyncio.wait_for(runs.idle(), 1)


@pytest.mark.parametrize("inline", [True, False])
async def test_a_reader_that_leaves_cancels_the_job(inline: bool) -> None:
    runs, source, ended = Runs(), Source(), []
    run = runs.start(_job(), source.events(), on_end=lambda: ended.append(True), inline=inline)

    async def read() -> None:
        async for _ in run.stream():
            pass

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    reader.cancel()  # the client hung up: its request's task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.wait_for(runs.idle(), 1)
    assert source.outcome == "cancelled" and source.finished_at_end and not ended


# -- runs with a feed: any number of readers ----------------------------------------------------


async def _read_all(run) -> list[Event]:  # type: ignore[no-untyped-def]
    return [event async for event in run.follow()]


async def test_a_run_with_a_feed_goes_on_while_one_reader_remains() -> None:
    runs, source, ended = Runs(), Source(), []
    run = runs.start(_job(), source.events(), on_end=lambda: ended.append(True),
                     feed=JobFeed(partial_images=0))
    staying = asyncio.create_task(_read_all(run))
    leaving = asyncio.create_task(_read_all(run))
    await asyncio.sleep(0.01)
    assert run.readers == 2
    leaving.cancel()  # one client hung up
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await asyncio.sleep(0.01)
    assert source.outcome == "running" and run.readers == 1
    late = asyncio.create_task(_read_all(run))  # a repeat attaches: it gets what it missed
    source.release.set()
    got = await asyncio.wait_for(staying, 1)
    assert [type(e) for e in got] == [Progress, Completed] == [
        type(e) for e in await asyncio.wait_for(late, 1)]
    assert source.outcome == "completed" and ended == [True]
    await asyncio.wait_for(runs.idle(), 1)


@pytest.mark.parametrize("keep_running", [False, True], ids=["cancel", "finish"])
async def test_the_last_reader_leaving_cancels_the_job_unless_it_keeps_running(
        keep_running: bool) -> None:
    runs, source = Runs(), Source()
    feed = JobFeed(partial_images=0)
    run = runs.start(_job(), source.events(), feed=feed, keep_running=keep_running)
    reader = asyncio.create_task(_read_all(run))
    await asyncio.sleep(0.01)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.sleep(0.01)
    if keep_running:
        assert source.outcome == "running" and not feed.ended
        source.release.set()  # it runs to its end for whoever comes back
        await asyncio.wait_for(feed.finished(), 1)
        assert source.outcome == "completed" and isinstance(feed.terminal, Completed)
    else:
        assert source.outcome == "cancelled" and feed.ended and feed.terminal is None
    await asyncio.wait_for(runs.idle(), 1)


async def test_a_run_with_a_feed_aborted_by_a_shutdown_ends_with_the_error() -> None:
    runs, source, ended = Runs(), Source(), []
    job = _job()
    run = runs.start(job, source.events(), on_end=lambda: ended.append(True),
                     feed=JobFeed(partial_images=0), keep_running=True)
    reader = asyncio.create_task(_read_all(run))
    await asyncio.sleep(0.01)
    assert runs.abort_all(SHUTDOWN) == 1
    got = await asyncio.wait_for(reader, 1)
    assert isinstance(got[-1], Failed) and got[-1].error is SHUTDOWN and ended == [True]
    await asyncio.wait_for(runs.idle(), 1)
