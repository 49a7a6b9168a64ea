"""The progress hub: keeps each job's last snapshot and pushes every update to its watchers.

Watchers join a Socket.IO room named after the job *and their own key*, so a client can
subscribe to a job id before the job exists (the browser subscribes, then POSTs) and yet never
hear about another key's job that happens to use the same id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from proxy.progress.latency import LatencyBook
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.snapshots import SnapshotStore

NAMESPACE = "/image-progress"
EVENT = "progress"


class Emitter(Protocol):
    async def emit(self, event: str, data: Any, *, to: str, namespace: str) -> None: ...


def room_for(owner: str, job_id: str) -> str:
    return f"job:{owner}:{job_id}"


class ProgressHub:
    def __init__(self, store: SnapshotStore, latency: LatencyBook) -> None:
        self.store = store
        self.latency = latency
        self.emitter: Emitter | None = None
        # Whether a room has a watcher in this process; None when watchers may be elsewhere
        # (Redis), so every update is emitted.
        self.watched: Callable[[str], bool] | None = None

    async def _emit(self, snapshot: JobSnapshot) -> None:
        if self.emitter is None:
            return
        room = room_for(snapshot.owner, snapshot.job_id)
        if self.watched is not None and not self.watched(room):
            return  # most jobs are watched by nobody: no event to build
        await self.emitter.emit(EVENT, snapshot.to_wire(), to=room, namespace=NAMESPACE)

    async def create(self, snapshot: JobSnapshot) -> bool:
        """Register a new job; False when its id is already in use."""
        if not await self.store.create(snapshot):
            return False
        await self._emit(snapshot)
        return True

    async def publish(self, snapshot: JobSnapshot) -> None:
        await self.store.put(snapshot)
        await self._emit(snapshot)

    async def get(self, job_id: str, owner: str) -> JobSnapshot | None:
        """The job's snapshot if ``owner`` may see it (another key's job reads as unknown)."""
        snapshot = await self.store.get(job_id)
        if snapshot is None or snapshot.owner != owner:
            return None
        return snapshot
