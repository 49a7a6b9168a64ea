"""Turns one job's events into a sequence of snapshots with the guarantees watchers rely on.

Status only moves forward (queued → running → succeeded | failed | cancelled), the percentage
never goes backwards, ``seq`` grows by one per update, and the last update is terminal (100 on
success). Where the provider gives no signal at all, a ticker publishes an estimate from the
model's recent latencies, marked ``estimated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from typing import Any

from proxy.core.events import Completed, Event, Failed, PartialImage, Progress
from proxy.progress.hub import ProgressHub
from proxy.progress.snapshot import JobSnapshot

TICK_SECONDS = 1.0


def estimate(elapsed: float, expected: float) -> tuple[float, float | None]:
    """(percent, eta) for a job ``elapsed`` seconds in, expected to take ``expected`` seconds:
    linear to 90 %, then creeping toward 99 % so an overdue job still looks alive."""
    knee = 0.9 * expected
    if elapsed < knee:
        return 100.0 * elapsed / expected, expected - elapsed
    return 90.0 + 9.0 * (1.0 - math.exp(-(elapsed - knee) / (0.5 * expected))), None


class JobTracker:
    def __init__(self, hub: ProgressHub, job_id: str, model: str, owner: str,
                 expected_seconds: float | None = None) -> None:
        self.hub = hub
        now = time.time()
        self.snapshot = JobSnapshot(job_id=job_id, seq=0, status="queued", percent=0.0,
                                    model=model, created_at=now, updated_at=now, owner=owner)
        self._started = time.monotonic()
        self._running_since: float | None = None
        self._signal = False  # the provider reports real progress: no estimating
        self._expected = hub.latency.expected(model, expected_seconds)
        self._ticker: asyncio.Task[None] | None = None

    async def open(self) -> bool:
        """Publish the queued snapshot; False if the job id is taken."""
        return await self.hub.create(self.snapshot)

    async def _update(self, **changes: Any) -> None:
        if self.snapshot.terminal:
            return
        if "percent" in changes:
            changes["percent"] = round(max(self.snapshot.percent, changes["percent"]), 2)
        if changes.get("status") == "running" and self._running_since is None:
            self._running_since = time.monotonic()
        self.snapshot = dataclasses.replace(
            self.snapshot, seq=self.snapshot.seq + 1, updated_at=time.time(), **changes)
        await self.hub.publish(self.snapshot)

    def _eta(self, percent: float) -> float | None:
        if self._running_since is None or percent <= 0 or percent >= 100:
            return None
        elapsed = time.monotonic() - self._running_since
        return round(elapsed * (100 - percent) / percent, 1)

    async def observe(self, event: Event) -> None:
        if isinstance(event, Progress):
            queued = event.stage == "queued" and self.snapshot.status == "queued"
            if event.percent > 0 or event.step:
                self._signal = True
            await self._update(
                status="queued" if queued else "running", percent=event.percent,
                step=event.step, total_steps=event.total_steps,
                eta_s=self._eta(max(self.snapshot.percent, event.percent)),
                stage=event.stage, message=event.message, estimated=False)
        elif isinstance(event, PartialImage) and self.snapshot.status == "queued":
            await self._update(status="running")
        elif isinstance(event, Completed):
            self.hub.latency.record(self.snapshot.model, time.monotonic() - self._started)
            await self._update(status="succeeded", percent=100.0, eta_s=0.0, estimated=False,
                               step=self.snapshot.total_steps)
        elif isinstance(event, Failed):
            await self._update(status="failed", eta_s=None, error=event.error.body()["error"])

    async def cancelled(self, message: str = "The client went away before the job finished.") \
            -> None:
        await self._update(status="cancelled", eta_s=None, message=message)

    async def _tick(self) -> None:
        while not self.snapshot.terminal:
            await asyncio.sleep(TICK_SECONDS)
            if self._signal or self.snapshot.terminal:
                return
            percent, eta = estimate(time.monotonic() - self._started, self._expected)
            await self._update(status="running", percent=percent,
                               eta_s=None if eta is None else round(eta, 1), estimated=True)

    def start_estimating(self) -> None:
        self._ticker = asyncio.create_task(self._tick())

    async def stop_estimating(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
