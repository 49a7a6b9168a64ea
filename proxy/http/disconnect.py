"""Watching for a client that hangs up while its request waits.

Starlette does not notice a vanished client until it writes, and an image job can take minutes
before the first byte: fetching input images, running, waiting for the first event. One task per
request listens for ``http.disconnect``; when it comes while a watched block runs, the request's
own task is cancelled, and with it whatever it waits for (the job and its upstream request are
closed as the cancellation unwinds them). The body must have been read before the watch starts:
after it, the only message the server sends is the disconnect.

A request has one watcher however many blocks it watches: the endpoint's wait for the job, then
the response's writing of a stream or a passed-through answer enter the same :class:`ClientWatch`
(the same task runs both). The watcher is not cancelled when a block ends: it ends by itself
when the server says the request is over (uvicorn's ``receive`` answers ``http.disconnect`` once
the response is complete, as when the client leaves), so a request leaves no cancelled task and
its traceback behind.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.requests import Request

CLIENT_CLOSED = 499  # nginx's "client closed request": nobody will read it, logs will


class ClientGone(Exception):
    """The client hung up while its request was waiting."""


class ClientWatch:
    """``async with ClientWatch(request): ...``: the block is cancelled if the client leaves,
    and ``ClientGone`` raised in its place. It may be entered again, one block at a time; a
    block entered after the disconnect came raises ``ClientGone`` at once."""

    __slots__ = ("_active", "_owner", "_receive", "_task", "disconnected", "gone")

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._owner: asyncio.Task[object] | None = None
        self._task: asyncio.Task[None] | None = None
        self._active = False
        self.disconnected = False  # the server said so (the client left, or the request ended)
        self.gone = False  # it came while a block ran: that block was cancelled

    async def __aenter__(self) -> ClientWatch:
        if self.disconnected:  # between two blocks: nothing more is written for it
            raise ClientGone
        self._owner = asyncio.current_task()
        self._active = True
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        # The owner is suspended in the block (it cannot be between the block's end and
        # __aexit__, which runs without yielding): cancelling it interrupts the block.
        if self._active and self._owner is not None:
            self.gone = True
            self._owner.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._active = False
        if self.gone and exc_type is asyncio.CancelledError and self._owner is not None:
            self.gone = False
            self._owner.uncancel()
            raise ClientGone from None
