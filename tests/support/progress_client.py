"""A Socket.IO watcher for tests: connects to /image-progress and records what it receives;
and the guarantees every stream of progress events must keep."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

NAMESPACE = "/image-progress"


class Watcher:
    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.client.on("progress", self._on_progress, namespace=NAMESPACE)

    async def _on_progress(self, data: dict[str, Any]) -> None:
        self.events.append(data)
        self._changed.set()

    async def connect(self, url: str, token: str | None = "unused") -> None:
        await self.client.connect(url, namespaces=[NAMESPACE], transports=["websocket"],
                                  auth={"token": token} if token is not None else None,
                                  wait_timeout=10)

    async def subscribe(self, job_id: str) -> dict[str, Any]:
        return await self.client.call("subscribe", {"job_id": job_id}, namespace=NAMESPACE,
                                      timeout=10)

    async def wait_for(self, predicate, timeout: float = 30) -> dict[str, Any]:
        """The first recorded event matching ``predicate``, waiting for it if need be."""
        async def look() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(look(), timeout)

    async def close(self) -> None:
        await self.client.disconnect()


def assert_well_formed(events: list[dict]) -> None:
    """The guarantees every watcher relies on."""
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents), "percent never goes backwards"
    order = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
    ranks = [order[e["status"]] for e in events]
    assert ranks == sorted(ranks), "status only moves forward"
    assert all(e["status"] in order for e in events)
    terminal = [e for e in events if order[e["status"]] == 2]
    assert terminal == events[-1:], "exactly one terminal event, and it is the last"
