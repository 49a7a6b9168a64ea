"""A Socket.IO watcher for tests: connects to /image-progress and records what it receives."""

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
