"""The jobs running in this process, so a shutdown can wait for them and end stragglers.

A streamed or detached job runs in its own task, apart from whoever reads its events: it reads
the job's events (``run_job``) and hands them to one reader through a small queue (the SSE
response, or a collector that keeps a detached job's result). The queue is short on purpose: a
slow reader slows the run instead of letting partial images pile up in memory.

An attached JSON job needs neither: its one reader collects the answer in the request's own
task, so the run is *inline* and its events are read straight from ``run_job`` (no task, no
queue, no hand-off per event on the hot path).

Either way a reader that leaves cancels the run (the upstream is closed and the job ends
``cancelled``), and a shutdown aborts it with an error the reader still receives as its last
event.

A job whose client chose its id (and a detached job) runs in a task of its own into a *feed*
(:class:`~proxy.jobs.feed.JobFeed`) instead: any number of readers follow it, each from where
it asks, and the run does not wait for them. It is cancelled when its last reader leaves before
the end, unless it was started to ``keep_running`` (``on_disconnect: finish``, or detached).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed
from proxy.jobs.feed import JobFeed
from proxy.jobs.job import Job

log = logging.getLogger("proxy.jobs.runs")
QUEUE_SIZE = 2


class JobRun:
    def __init__(self, job: Job, events: AsyncGenerator[Event, None], runs: Runs,
                 on_end: Callable[[], None] | None = None, feed: JobFeed | None = None,
                 keep_running: bool = False) -> None:
        self.job = job
        # Called (synchronously) as the reader receives the terminal event: what the job held
        # that its answer should not outlive (its capacity slot) is given back before the
        # client can send its next request.
        self._on_end = on_end
        self._events = events
        self._queue: asyncio.Queue[Event] | None = None
        self._runs = runs
        # The task the job's events are read in: its own, or (inline) its reader's.
        self.task: asyncio.Task[Any] | None = None
        # A run with a feed: followed by any number of readers (counted), and cancelled when
        # the last one leaves early unless it keeps running.
        self.feed = feed
        self.keep_running = keep_running
        self.readers = 0

    def start(self) -> JobRun:
        if self.feed is not None:
            self.task = asyncio.create_task(self._run_into(self.feed), name=f"job {self.job.id}")
        else:
            self._queue = asyncio.Queue(QUEUE_SIZE)
            self.task = asyncio.create_task(self._run(), name=f"job {self.job.id}")
        self._runs.track(self.task)
        return self

    @property
    def inline(self) -> bool:
        return self._queue is None and self.feed is None

    async def _run(self) -> None:
        assert self._queue is not None
        try:
            async with aclosing(self._events) as events:
                async for event in events:
                    await self._queue.put(event)
        except asyncio.CancelledError:
            if self.job.aborted is None:
                raise  # the reader left: nobody to tell
            # Aborted (the gateway is stopping): the reader learns why, as its last event.
            await self._queue.put(Failed(self.job.aborted))

    async def _run_into(self, feed: JobFeed) -> None:
        try:
            async with aclosing(self._events) as events:
                async for event in events:
                    if isinstance(event, (Completed, Failed)) and self._on_end is not None:
                        self._on_end()
                    feed.push(event)
        except asyncio.CancelledError:
            if self.job.aborted is None:
                raise  # its last reader left: the feed closes without a terminal event
            if self._on_end is not None:
                self._on_end()
            feed.push(Failed(self.job.aborted))
        finally:
            feed.close()

    def stream(self) -> AsyncGenerator[Event, None]:
        """The job's events, ending with its terminal one. Leaving early cancels the job."""
        if self.feed is not None:
            return self.follow()
        return self._read_inline() if self._queue is None else self._read_queue(self._queue)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncGenerator[None, None]:
        """A reader of a run with a feed, for as long as the block lasts: when the last one
        leaves before the job ended, the job is cancelled (unless it keeps running)."""
        assert self.feed is not None
        self.readers += 1
        try:
            yield
        finally:
            self.readers -= 1
            if not self.readers and not self.keep_running and not self.feed.ended:
                await self.cancel()

    async def follow(self, start: int = 0) -> AsyncGenerator[Event, None]:
        """A run with a feed: its kept events from index ``start``, then the rest as they
        come, as one counted reader."""
        assert self.feed is not None
        async with self.reading():
            async for event in self.feed.follow(start):
                yield event

    async def _read_inline(self) -> AsyncGenerator[Event, None]:
        """An inline run: the job's events read in the reader's task, to their very end (the
        job's finisher included), so the run is over when this is."""
        task = self.task = asyncio.current_task()
        assert task is not None
        self._runs.track(task, self, until_forgotten=True)
        try:
            async with aclosing(self._events) as events:
                try:
                    async for event in events:
                        if isinstance(event, (Completed, Failed)) and self._on_end is not None:
                            self._on_end()
                        yield event
                except asyncio.CancelledError:
                    if self.job.aborted is None:
                        raise  # the reader left (its task was cancelled): nobody to tell
                    # Aborted (the gateway is stopping): the job has ended, the reader goes
                    # on and learns why, as its last event.
                    task.uncancel()
                    if self._on_end is not None:
                        self._on_end()
                    yield Failed(self.job.aborted)
        finally:
            self._runs.forget(task)

    async def _read_queue(self, queue: asyncio.Queue[Event]) -> AsyncGenerator[Event, None]:
        ended = False
        try:
            while True:
                event = await queue.get()
                ended = isinstance(event, (Completed, Failed))
                if ended and self._on_end is not None:
                    self._on_end()
                yield event
                if ended:
                    return
        finally:
            if not ended:  # after the terminal event the run winds down (ledger, slot) alone
                await self.cancel()

    async def cancel(self) -> None:
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(task)

    def abort(self, error: GatewayError) -> None:
        """End the job now with ``error`` (its reader receives it as a ``Failed`` event)."""
        if self.task is not None and not self.task.done():
            self.job.aborted = error
            self.task.cancel()


class Runs:
    """Every job running in this process (and every detached collector), so a shutdown can
    wait for them, and end the ones that outstay the grace period."""

    def __init__(self) -> None:
        self.active: dict[asyncio.Task[Any], JobRun | None] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def track(self, task: asyncio.Task[Any], run: JobRun | None = None, *,
              until_forgotten: bool = False) -> None:
        """Count ``task`` (running ``run``, if any) until it is done, or (an inline run, in
        its reader's task) until ``forget``."""
        self.active[task] = run
        self._idle.clear()
        if not until_forgotten:
            task.add_done_callback(self.forget)

    def forget(self, task: asyncio.Task[Any]) -> None:
        self.active.pop(task, None)
        if not self.active:
            self._idle.set()

    def start(self, job: Job, events: AsyncGenerator[Event, None],
              on_end: Callable[[], None] | None = None, *, inline: bool = False,
              feed: JobFeed | None = None, keep_running: bool = False) -> JobRun:
        """Run ``job`` (``events`` are ``run_job``'s): in a task of its own (into ``feed``,
        for any number of readers, if given), or ``inline``, read in the task of its one
        reader (an attached JSON request)."""
        run = JobRun(job, events, self, on_end, feed, keep_running)
        if not inline:
            run.start()
            assert run.task is not None
            self.active[run.task] = run
        return run

    def detach(self, work: Callable[[], Awaitable[None]], job: Job) -> None:
        """Run ``work`` (which reads a run to its end) with nobody attached."""
        self.track(asyncio.create_task(self._guarded(work, job), name=f"detached {job.id}"))

    @staticmethod
    async def _guarded(work: Callable[[], Awaitable[None]], job: Job) -> None:
        try:
            await work()
        except Exception:
            log.exception("detached job %s failed outside its provider", job.id)

    def abort_job(self, job_id: str, error: GatewayError) -> bool:
        """End the running job ``job_id`` now with ``error``; False when it does not run here."""
        for run in list(self.active.values()):
            if run is not None and run.job.id == job_id:
                run.abort(error)
                return True
        return False

    def abort_all(self, error: GatewayError) -> int:
        runs = [run for run in self.active.values() if run is not None]
        for run in runs:
            run.abort(error)
        return len(runs)

    async def idle(self) -> None:
        """Wait until no job runs (detached collectors included)."""
        await self._idle.wait()
