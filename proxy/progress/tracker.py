"""Turns one job's events into a sequence of snapshots with the guarantees watchers rely on.

Status only moves forward (queued → running → succeeded | failed | cancelled), the percentage
never goes backwards, ``seq`` grows by one per update, and the last update is terminal (100 on
success). Where the provider gives no signal at all, the percentage is estimated from the
model's recent latencies, marked ``estimated``.

The provider's side of the contract (``core/events.py`` ``Progress``): a ``queued`` Progress
keeps the job queued, with its ``queue_position`` and ``eta_s``, and pauses the estimator; the
first Progress of another stage makes the job running and starts the estimator's clock (a wait
in an upstream's queue is not part of a run). A Progress with a percentage, a step or
``measured`` is a real reading: the job is never estimated after it.

Cheap when nobody watches: an update only changes the tracker's own fields. Only while the job
is watched does an update become a ``progress`` event (through the hub's outbox), and only then
does a ticker publish an estimate every second; a read (a subscribe ack, an HTTP poll) brings
the estimate up to date itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from proxy.core.events import Completed, Event, Failed, PartialImage, Progress
from proxy.progress.hub import FinalWrite, ProgressHub, room_for
from proxy.progress.snapshot import TERMINAL, WIRE_FIELDS, JobSnapshot

TICK_SECONDS = 1.0


def estimate(elapsed: float, expected: float) -> tuple[float, float | None]:
    """(percent, eta) for a job ``elapsed`` seconds in, expected to take ``expected`` seconds:
    linear to 90 %, then creeping toward 99 % so an overdue job still looks alive."""
    knee = 0.9 * expected
    if elapsed < knee:
        return 100.0 * elapsed / expected, expected - elapsed
    return 90.0 + 9.0 * (1.0 - math.exp(-(elapsed - knee) / (0.5 * expected))), None


class JobTracker:
    """One job's progress. Its state lives here (the hub reads it for this process); the
    hub is told when the job opens, changes while watched, and ends."""

    def __init__(self, hub: ProgressHub, job_id: str, model: str, owner: str,
                 expected_seconds: float | None = None, seq: int = 0,
                 created_at: float | None = None) -> None:
        self.hub = hub
        self.job_id = job_id
        self.owner = owner
        self.room = room_for(owner, job_id)
        self.watched = False
        self.dirty = False  # changed since the hub last wrote it to a shared store
        now = time.time()
        # ``seq``: where a new attempt under a used id starts, after the last update of the
        # attempt before it, so watchers who drop stale updates by ``seq`` keep following.
        self._fields: dict[str, Any] = JobSnapshot(
            job_id=job_id, seq=seq, status="queued", percent=0.0, model=model,
            created_at=now if created_at is None else created_at,
            updated_at=now, owner=owner).to_store()
        self._snapshot: JobSnapshot | None = None
        self._started = time.monotonic()
        # Where estimates (and the measured duration) count from: the start, or the moment
        # the job left the upstream's queue.
        self._run_from = self._started
        self._waiting = False  # the provider says the job waits in the upstream's queue
        self._running_since: float | None = None
        self._signal = False  # the provider reports real progress: no estimating
        self._estimating = False  # between start_estimating and stop_estimating
        self._expected = hub.latency.expected(model, expected_seconds)
        self._ticker: asyncio.Task[None] | None = None
        # A detached job's end is held back until its answer is stored (:meth:`conclude`), so
        # no reader sees it ended without its result.
        self.defer_end = False
        self._deferred: dict[str, Any] | None = None
        # While an end is written together with what goes with it (``write``: a durable job's
        # result), readers here still see the job as it was: the hub may first wait for an
        # older snapshot's write, and the end must not show before its result is stored.
        self._before_end: JobSnapshot | None = None

    # ------------------------------------------------------------------ state
    @property
    def snapshot(self) -> JobSnapshot:
        if self._snapshot is None:
            self._snapshot = JobSnapshot(**self._fields)
        return self._snapshot

    def wire(self) -> dict[str, Any]:
        """The ``progress`` payload of the current state."""
        fields = self._fields
        return {name: fields[name] for name in WIRE_FIELDS}

    @property
    def terminal(self) -> bool:
        return self._fields["status"] in TERMINAL

    def _apply(self, changes: dict[str, Any]) -> bool:
        """Record an update; False (and nothing changes) once the job has ended."""
        fields = self._fields
        if fields["status"] in TERMINAL:
            return False
        if "percent" in changes:
            changes["percent"] = round(max(fields["percent"], changes["percent"]), 2)
        if changes.get("status") == "running" and self._running_since is None:
            self._running_since = time.monotonic()
        fields.update(changes)
        fields["seq"] += 1
        fields["updated_at"] = time.time()
        self._snapshot = None
        self.dirty = True
        return True

    def _change(self, publish: bool = True, **changes: Any) -> None:
        if self._apply(changes) and publish and self.watched:
            self.hub.publish(self)

    async def _end(self, write: FinalWrite | None = None, **changes: Any) -> None:
        if self.defer_end:
            if self._deferred is None and not self.terminal:
                self._deferred = changes
                self._stop_ticker()
            return
        before = self.snapshot if write is not None else None
        if self._apply(changes):
            self._stop_ticker()
            self._before_end = before
            try:
                await self.hub.finish(self, write)
            finally:
                self._before_end = None

    def _eta(self, percent: float) -> float | None:
        if self._running_since is None or percent <= 0 or percent >= 100:
            return None
        elapsed = time.monotonic() - self._running_since
        return round(elapsed * (100 - percent) / percent, 1)

    # ------------------------------------------------------------------ events
    async def open(self, claim: bool = True, replace: bool = False) -> bool:
        """Register the job (queued); False if the job id is taken. ``claim=False``: the id was
        made here for a job answered on its own connection; ``replace``: the id was reserved
        elsewhere (see :meth:`ProgressHub.open`)."""
        return await self.hub.open(self, claim, replace)

    async def observe(self, event: Event) -> None:
        if isinstance(event, Progress):
            waiting = event.stage == "queued"
            if self._waiting and not waiting:
                self._run_from = time.monotonic()
            self._waiting = waiting
            queued = waiting and self._fields["status"] == "queued"
            if event.percent > 0 or event.step or event.measured:
                self._signal = True
            eta = event.eta_s
            if eta is None and not waiting:
                eta = self._eta(max(self._fields["percent"], event.percent))
            self._change(
                status="queued" if queued else "running", percent=event.percent,
                step=event.step, total_steps=event.total_steps, eta_s=eta,
                queue_position=event.queue_position if waiting else None,
                stage=event.stage, message=event.message, estimated=False)
        elif isinstance(event, PartialImage) and self._fields["status"] == "queued":
            self._waiting = False
            self._change(status="running", queue_position=None)
        elif isinstance(event, Completed):
            self.hub.latency.record(self._fields["model"], time.monotonic() - self._run_from)
            await self._end(status="succeeded", percent=100.0, eta_s=0.0, estimated=False,
                            step=self._fields["total_steps"], queue_position=None)
        elif isinstance(event, Failed):
            await self._end(status="failed", eta_s=None, queue_position=None,
                            error=event.error.body()["error"])

    async def cancelled(self, message: str = "The client went away before the job finished.") \
            -> None:
        await self._end(status="cancelled", eta_s=None, queue_position=None, message=message)

    async def conclude(self, failure: dict[str, Any] | None = None,
                       write: FinalWrite | None = None) -> None:
        """A detached job's answer is stored: the end held back since it ended becomes
        visible now (``failure``: it ends failed with this error body instead, its answer
        could not be made). ``write``: how its terminal snapshot is stored (a durable job's,
        together with its result)."""
        self.defer_end = False
        changes, self._deferred = self._deferred, None
        if failure is not None:
            changes = {"status": "failed", "eta_s": None, "queue_position": None,
                       "error": failure}
        if changes is not None:
            await self._end(write, **changes)

    # ------------------------------------------------------------------ watching, estimates
    def watch(self) -> None:
        """Someone watches: updates become events, and estimates start where they are due."""
        if self.watched or self.terminal:
            return
        self.watched = True
        self._start_ticker()

    def _start_ticker(self) -> None:
        if self._estimating and not self._signal and (self._ticker is None
                                                      or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def unwatch(self) -> None:
        """Nobody watches any more: updates stay here (the ticker stops at its next tick)."""
        self.watched = False

    def _estimate_due(self) -> bool:
        return (self._estimating and not self._signal and not self._waiting
                and not self.terminal and time.monotonic() - self._run_from >= TICK_SECONDS)

    def _estimate(self, publish: bool) -> None:
        percent, eta = estimate(time.monotonic() - self._run_from, self._expected)
        self._change(publish, status="running", percent=percent,
                     eta_s=None if eta is None else round(eta, 1), estimated=True)

    def current(self) -> JobSnapshot:
        """The snapshot as of now: a due estimate is made first (recorded, not published;
        watchers get the ticker's next one). Until an end written with its result is stored,
        the snapshot from before it."""
        if self._before_end is not None:
            return self._before_end
        if self._estimate_due():
            self._estimate(publish=False)
        return self.snapshot

    async def _tick(self) -> None:
        while self.watched and self._estimating and not self._signal and not self.terminal:
            if self._estimate_due():
                self._estimate(publish=True)
            await asyncio.sleep(TICK_SECONDS)

    def start_estimating(self) -> None:
        """The job runs: estimate its progress (while watched) until the provider reports
        real progress or ``stop_estimating``."""
        self._estimating = True
        if self.watched:
            self._start_ticker()

    def _stop_ticker(self) -> asyncio.Task[None] | None:
        self._estimating = False
        ticker, self._ticker = self._ticker, None
        if ticker is not None and ticker is not asyncio.current_task():
            ticker.cancel()
            return ticker
        return None

    async def stop_estimating(self) -> None:
        ticker = self._stop_ticker()
        if ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
