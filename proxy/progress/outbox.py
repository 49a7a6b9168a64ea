"""Progress updates on their way to watchers, emitted by one task off the jobs' own paths.

A watched job only appends its update here and goes on with its work: emitting to a room of a
thousand subscribers (or publishing through Redis to other processes) happens in the outbox's
task, in the order the updates were made, so a watched job streams as fast as an unwatched one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Protocol

log = logging.getLogger("proxy.progress")

NAMESPACE = "/image-progress"
EVENT = "progress"


class Emitter(Protocol):
    async def emit(self, event: str, data: Any, *, to: str, namespace: str) -> None: ...


class Outbox:
    """A FIFO of (room, payload); its task runs while the FIFO is not empty."""

    def __init__(self) -> None:
        self.emitter: Emitter | None = None
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def push(self, room: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for the watchers of ``room`` (nothing when nobody can listen)."""
        if self.emitter is None:
            return
        self._queue.append((room, payload))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def __len__(self) -> int:
        return len(self._queue)

    async def _drain(self) -> None:
        emitter = self.emitter
        assert emitter is not None
        try:
            while self._queue:
                # What the update's job woke up meanwhile (its own stream's writer) goes first.
                await asyncio.sleep(0)
                room, payload = self._queue.popleft()
                try:
                    await emitter.emit(EVENT, payload, to=room, namespace=NAMESPACE)
                except Exception:  # one failed emit (e.g. Redis away) must not stop the rest
                    log.warning("progress for %s could not be emitted", room, exc_info=True)
        finally:
            self._task = None

    async def idle(self) -> None:
        """Wait until every queued update has been emitted."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def aclose(self) -> None:
        task, self._task = self._task, None
        self._queue.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
