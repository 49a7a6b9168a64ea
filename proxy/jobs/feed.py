"""A job's events for any number of readers, kept so a reader who joins late or comes back gets
what it missed and then the rest.

A job whose client chose its id can have several readers: the request that started it, a
repeat of that request (the official SDKs' automatic retry, a duplicate), a stream that
re-attaches after losing its connection, and the collector that keeps the job's answer. The run
pushes each event here once; every reader follows the same list at its own pace, from wherever
it asks, so the order of events (and the numbering of the stream's frames made from them) is the
same for all of them.

What is kept is bounded by the request: the first progress event (a stream commits its
``200`` on it, as it does without a feed), the partial images (at most as many as the request
asked for: a provider sending more has the extra dropped, for every reader alike), the final
images (``n``) and the terminal event. Other progress events go to the tracker only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from proxy.core.events import Completed, Event, Failed, PartialImage, Progress


class JobFeed:
    def __init__(self, partial_images: int) -> None:
        self.events: list[Event] = []
        # True once nothing more will come: a terminal event was pushed, or the run stopped
        # without one (cancelled).
        self.ended = False
        self._partials_left = partial_images
        self._progressed = False
        self._changed = asyncio.Event()

    @property
    def terminal(self) -> Completed | Failed | None:
        """The job's terminal event; None while it runs, or when it was cancelled."""
        last = self.events[-1] if self.events else None
        return last if isinstance(last, (Completed, Failed)) else None

    def push(self, event: Event) -> None:
        """Keep ``event`` (if it is kept at all) and wake the readers."""
        if self.ended:
            return
        if isinstance(event, Progress):
            if self._progressed:
                return
            self._progressed = True
        elif isinstance(event, PartialImage):
            if self._partials_left <= 0:
                return
            self._partials_left -= 1
        self.events.append(event)
        if isinstance(event, (Completed, Failed)):
            self.ended = True
        self._wake()

    def close(self) -> None:
        """The run is over: readers stop after what is kept (no terminal event if none came)."""
        if not self.ended:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, start: int = 0) -> AsyncIterator[Event]:
        """The kept events from index ``start`` on, then each new one as it comes, until the
        job ends."""
        at = start
        while True:
            while at < len(self.events):
                yield self.events[at]
                at += 1
            if self.ended:
                return
            await self._changed.wait()

    async def finished(self) -> None:
        """Return once the job has ended (or stopped)."""
        while not self.ended:
            await self._changed.wait()
