"""Following one queued prompt on its server to its end.

While it waits, its place in the server's queue (``queued``, position 1 = next, an ETA once the
server's runs have been measured), read again whenever a ``status`` message says the queue
changed. Once it runs, the websocket's messages (:class:`~.run.PromptRun`). Without a websocket
(refused, or lost mid-job), ``/history`` polls, with ``/queue`` for the place in the queue and
to notice a prompt the server forgot; polls that fail are retried for ``poll_grace`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from proxy.core.errors import GatewayError, upstream_error
from proxy.core.events import Event, Progress
from proxy.providers.comfyui.pool import Server
from proxy.providers.comfyui.protocol import QueueState, history_outcome
from proxy.providers.comfyui.run import Clock, PromptRun

log = logging.getLogger("proxy.providers.comfyui")

# Once the prompt runs, every this many empty ``/history`` polls ask ``/queue`` whether the
# server still has it.
QUEUE_CHECK_EVERY = 5


class Follow:
    def __init__(self, server: Server, run: PromptRun,
                 ws: aiohttp.ClientWebSocketResponse | None, clock: Clock,
                 poll_interval: float, poll_grace: float) -> None:
        self.server = server
        self.run = run
        self.ws = ws
        self.clock = clock
        self.poll_interval = poll_interval
        self.poll_grace = poll_grace
        self.outputs: dict[str, Any] = {}
        self._position: int | None = None  # the place in the queue last reported

    async def events(self) -> AsyncGenerator[Event, None]:
        """The prompt's events until it has ended; then :attr:`outputs` holds its outputs."""
        run = self.run
        yield Progress(0.0, stage="queued", measured=True,
                       message=f"queued on the ComfyUI server at {self.server.host}")
        while self.ws is not None and not run.finished and not run.lost:
            for event in await run.receive(self.ws):
                yield event
            self._note()
            if run.queue_changed and run.waiting:
                run.queue_changed = False
                place = self._place(await self._queue())
                if place is not None:
                    yield place
        if run.finished:
            self.outputs = run.outputs
            return
        yield Progress(run.tracker.percent, measured=True,
                       stage="queued" if run.waiting else "waiting",
                       queue_position=self._position if run.waiting else None,
                       message=("websocket lost" if self.ws is not None else "no websocket")
                       + "; following the job through /history")
        async for event in self._poll():
            yield event

    def _note(self) -> None:
        """Tell the server's record what the last message taught: when this prompt started
        (for others' ETAs), how long its queue is (for placing jobs)."""
        run, server = self.run, self.server
        if run.started_at is not None and not run.finished:
            server.started.setdefault(run.prompt_id, run.started_at)
        if run.queue_remaining is not None:
            server.note_remaining(run.queue_remaining)
            run.queue_remaining = None

    async def _queue(self) -> QueueState | None:
        try:
            return await self.server.queue.current()
        except GatewayError as error:
            log.info("ComfyUI /queue at %s: %s", self.server.host, error.message)
            return None

    def _place(self, state: QueueState | None) -> Progress | None:
        """A ``queued`` event when the prompt's place in the queue changed; a prompt the
        queue shows running is marked so (its own messages will follow)."""
        run = self.run
        if state is None:
            return None
        where = state.where(run.prompt_id)
        if where == "running":
            run.running()
        position = state.position(run.prompt_id)
        if where != "pending" or position == self._position:
            return None
        self._position = position
        return Progress(0.0, stage="queued", queue_position=position, measured=True,
                        eta_s=self.server.eta(state, run.prompt_id),
                        message=f"number {position} in the queue of the ComfyUI server at "
                                f"{self.server.host}")

    async def _poll(self) -> AsyncGenerator[Event, None]:
        """Poll ``/history`` until the prompt's entry is complete; its outputs."""
        run, polls, failing_since = self.run, 0, None
        while True:
            timeout = self.clock.http()  # past the job's deadline this raises: no retry
            try:
                entry = await self.server.client.history(run.prompt_id, timeout)
            except GatewayError as error:
                failing_since = self._failing(error, failing_since)
                await self._sleep()
                continue
            failing_since = None
            if entry is not None:
                run.finished = True  # ComfyUI writes the entry when the prompt is over
                outputs = history_outcome(entry, self.server.host)
                if outputs is not None:
                    self.outputs = outputs
                    return
            polls += 1
            if entry is None and (run.waiting or polls % QUEUE_CHECK_EVERY == 0):
                async for event in self._check_queue():
                    yield event
            await self._sleep()

    async def _check_queue(self) -> AsyncGenerator[Event, None]:
        run = self.run
        state = await self._queue()
        if state is None:
            return
        waited = run.waiting
        place = self._place(state)
        if place is not None:
            yield place
        where = state.where(run.prompt_id)
        if where == "running" and waited:
            yield Progress(run.tracker.percent, stage="running", measured=True,
                           message="running (followed through /history)")
        elif where == "absent" and await self._forgotten():
            run.finished = True
            raise upstream_error(
                f"The ComfyUI server at {self.server.host} no longer knows the job (was it "
                "restarted?).", code="upstream_lost")

    async def _forgotten(self) -> bool:
        """Neither queued nor in the history (read again: it may have ended just now)."""
        timeout = self.clock.http()
        try:
            return await self.server.client.history(self.run.prompt_id, timeout) is None
        except GatewayError as error:
            log.info("ComfyUI /history at %s: %s", self.server.host, error.message)
            return False

    def _failing(self, error: GatewayError, since: float | None) -> float:
        """A failed poll: retried until polls have failed for ``poll_grace`` seconds."""
        now = time.monotonic()
        since = now if since is None else since
        if error.code == "upstream_unreachable":
            self.server.went_down(error.message)
        if now - since >= self.poll_grace:
            raise upstream_error(
                f"The ComfyUI server at {self.server.host} stopped answering while it ran the "
                f"job (for {now - since:.0f} s): {error.message}",
                code=error.code or "upstream_error")
        log.info("polling ComfyUI at %s failed, retrying: %s", self.server.host, error.message)
        return since

    async def _sleep(self) -> None:
        await asyncio.sleep(min(self.poll_interval, self.clock.remaining()))
