"""One watcher per request (proxy.http.disconnect.ClientWatch): the endpoint's block and the
response's block share its one task, which is never cancelled on the way through: it ends when
the server answers ``http.disconnect`` (the response complete, or the client gone). A client
that leaves during a block cancels that block (``ClientGone``); one that left between blocks
makes the next block refuse at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.http.disconnect import ClientGone, ClientWatch


class Server:
    """``receive`` as uvicorn's after the body was read: it waits until the request is over,
    then answers ``http.disconnect``; counts the watchers waiting in it."""

    def __init__(self) -> None:
        self.over = asyncio.Event()
        self.waiting = 0

    async def receive(self) -> dict[str, Any]:
        self.waiting += 1
        try:
            await self.over.wait()
        finally:
            self.waiting -= 1
        return {"type": "http.disconnect"}


class FakeRequest:
    def __init__(self, server: Server) -> None:
        self.receive = server.receive


async def test_two_blocks_share_one_watcher_that_ends_by_itself() -> None:
    server = Server()
    watch = ClientWatch(FakeRequest(server))  # type: ignore[arg-type]
    async with watch:  # the endpoint's wait
        await asyncio.sleep(0)
        task = watch._task
    async with watch:  # the response's writing
        await asyncio.sleep(0)
        assert watch._task is task and server.waiting == 1
    assert task is not None and not task.done(), "not cancelled when a block ends"
    server.over.set()  # the response is complete: uvicorn's receive says disconnect
    await asyncio.wait_for(task, 1)
    assert not task.cancelled() and watch.disconnected and not watch.gone


async def test_a_client_that_leaves_during_a_block_cancels_it() -> None:
    server = Server()
    watch = ClientWatch(FakeRequest(server))  # type: ignore[arg-type]
    with pytest.raises(ClientGone):
        async with watch:
            asyncio.get_running_loop().call_later(0.01, server.over.set)
            await asyncio.sleep(10)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_after_the_client_left_refuses_at_once() -> None:
    server = Server()
    watch = ClientWatch(FakeRequest(server))  # type: ignore[arg-type]
    async with watch:
        pass
    server.over.set()  # it left between the endpoint's block and the response's
    await asyncio.sleep(0.01)
    with pytest.raises(ClientGone):
        async with watch:
            raise AssertionError("not entered")
