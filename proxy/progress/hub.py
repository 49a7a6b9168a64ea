"""The progress hub: knows the jobs running in this process and who watches them, answers
"what is the state of job X", and sends a watched job's updates to its watchers.

Cheap when nobody watches: most jobs are watched by nobody, so a job's tracker keeps its state
to itself, and the hub writes only its first snapshot (which claims the id) and its last one to
the store. Only a watched job builds ``progress`` events (and estimates, for a backend without
signal). Watching is known

* in this process, from the Socket.IO rooms (``local``): a subscribe here flips a running job
  to watched at once;
* in other processes (Redis), from watch marks in the store: a subscriber sets one, and the
  owning process reads it when the job opens and then every ``sync_interval`` seconds.

Reads are fresh on the owning process (the tracker's own state). Elsewhere they come from the
store, where the owner rewrites a running job's snapshot about once a second when it changed
(``refresh_seconds``): a running job read from another process may be up to about a second
behind. A watched job's snapshot is stored with each update it publishes (batched, off the job's
path): if its process dies, the update that ends it (``instance_lost``, made by another process
from the stored snapshot) must come after every update its watchers were sent. Its first
snapshot is stored before the job starts and its terminal one before anyone hears that the job
ended, so a read is never wrong about a job having started or ended.

Watchers join a Socket.IO room named after the job *and their own key*, so a client can
subscribe to a job id before the job exists (the browser subscribes, then POSTs) and yet never
hear about another key's job that happens to use the same id.

The shared store may go away (:mod:`proxy.fleet.policy`): a job never waits on it or fails
because of it. Running snapshots and watch marks are written again by the first sync that reaches
it (everything, since a restarted Redis may have lost it all); a job's last snapshot is kept here
and retried until it lands (:class:`~proxy.fleet.policy.WriteBehind`), and reads find it here
meanwhile. Only what cannot be done without the store fails, with 503: claiming an id, reading
another process's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from proxy.core.errors import StoreUnavailable
from proxy.fleet.leases import LeaseTable
from proxy.fleet.policy import WriteBehind, background
from proxy.progress.latency import LatencyBook
from proxy.progress.outbox import EVENT, NAMESPACE, Emitter, Outbox
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.snapshots import SnapshotStore

__all__ = ["EVENT", "NAMESPACE", "Emitter", "FinalWrite", "ProgressHub", "Tracked", "room_for"]

log = logging.getLogger("proxy.progress")

SYNC_INTERVAL = 0.5  # how often the owner asks a shared store who watches its running jobs
REFRESH_SECONDS = 0.9  # at most this long (plus one sync) between rewrites of a running job


# Stores a job's terminal snapshot (and whatever goes with it); False when it was not its to
# write (another instance ended the job).
FinalWrite = Callable[[JobSnapshot], Awaitable[bool]]


def room_for(owner: str, job_id: str) -> str:
    return f"job:{owner}:{job_id}"


class Tracked(Protocol):
    """What the hub needs of a job's tracker (``tracker.JobTracker``)."""

    job_id: str
    owner: str
    room: str
    watched: bool
    dirty: bool  # changed since its snapshot was last written to a shared store

    @property
    def terminal(self) -> bool: ...

    @property
    def snapshot(self) -> JobSnapshot: ...

    def current(self) -> JobSnapshot:
        """The snapshot as of now (an estimate brought up to date, where one is made)."""

    def wire(self) -> dict[str, Any]:
        """The ``progress`` payload of the current state."""

    def watch(self) -> None: ...

    def unwatch(self) -> None: ...


class ProgressHub:
    def __init__(self, store: SnapshotStore, latency: LatencyBook,
                 sync_interval: float = SYNC_INTERVAL,
                 refresh_seconds: float = REFRESH_SECONDS,
                 leases: LeaseTable | None = None) -> None:
        self.store = store
        # A job's lease is written before its first running snapshot is (the fleet must be
        # able to end a job it can see): :meth:`LeaseTable.record`.
        self.leases = leases
        self.latency = latency
        self.sync_interval = sync_interval
        self.refresh_seconds = refresh_seconds
        self.outbox = Outbox()
        # Whether a room has a watcher connected to this process (the Socket.IO rooms).
        self.local: Callable[[str], bool] = lambda room: False
        # The jobs running here; weak, so a job dropped without ending cannot linger.
        self._live: weakref.WeakValueDictionary[str, Tracked] = weakref.WeakValueDictionary()
        # Rooms a subscriber here watches → when their mark in a shared store was last set.
        self._marked: dict[str, float] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[None]] = set()  # writes of running snapshots in flight
        # Watched jobs whose latest update is published but not stored yet.
        self._unstored: dict[str, Tracked] = {}
        self._storing: asyncio.Task[None] | None = None
        self._refreshed = -refresh_seconds  # when a sync last rewrote the changed snapshots
        # Last snapshots of ended jobs, written to the store (kept and retried until they are).
        self._final: WriteBehind[JobSnapshot] = WriteBehind(self._write_final)
        # Jobs the fleet ended while this process ran them (its lease lapsed): their end here
        # is neither stored nor published, the fleet's is.
        self._disowned: set[str] = set()

    def attach(self, emitter: Emitter, local: Callable[[str], bool]) -> None:
        """Where events go (the Socket.IO server) and how to ask it about a room."""
        self.outbox.emitter = emitter
        self.local = local

    # ------------------------------------------------------------------ a job's life
    async def open(self, tracker: Tracked, claim: bool = True, replace: bool = False) -> bool:
        """Register a new job; False when its id is already in use.

        ``claim=False`` is for an id this gateway made for a job answered on its own connection:
        nobody else can hold it or watch it yet, so with a shared store the opening write (a
        round trip per job) is skipped; the job is stored by the next sync if it runs that long,
        and at its end like every job; in memory it is written without checking the id.
        ``replace``: the id was reserved elsewhere (:mod:`proxy.jobs.claims`), and this job's
        first snapshot replaces whatever an earlier attempt under that id left."""
        if not claim and self.store.shared:
            self._live[tracker.job_id] = tracker
            tracker.dirty = True
            self._keep_in_sync()
            return True
        snapshot = tracker.snapshot
        if not claim:
            await self.store.put(snapshot)
            watched = False
        else:
            await self._record([tracker])
            opened = await (self.store.create(snapshot, tracker.room, replace=True) if replace
                            else self.store.create(snapshot, tracker.room))
            if not opened.created:
                return False
            watched = opened.watched
        self._live[tracker.job_id] = tracker
        if watched or self.local(tracker.room):
            tracker.watch()
            self.outbox.push(tracker.room, tracker.wire())
        self._keep_in_sync()
        return True

    def publish(self, tracker: Tracked) -> None:
        """A watched job changed: its watchers hear of it (soon, from the outbox)."""
        if not self.store.shared and not self.local(tracker.room):
            tracker.unwatch()  # its last watcher left
            return
        self.outbox.push(tracker.room, tracker.wire())
        if self.store.shared:
            self._unstored[tracker.job_id] = tracker
            if self._storing is None:
                self._storing = background(self._store_published())

    async def _store_published(self) -> None:
        """Store the snapshots of watched jobs as they publish (one batch per round trip)."""
        try:
            while self._unstored:
                trackers = [t for t in self._unstored.values() if not t.terminal]
                self._unstored.clear()
                for tracker in trackers:
                    tracker.dirty = False
                with self._writing():
                    try:
                        await self._record(trackers)
                        await self.store.sync([t.snapshot for t in trackers], (), ())
                    except Exception as exc:
                        for tracker in trackers:  # the sync writes them, once it can
                            tracker.dirty = not tracker.terminal
                        self._unstored.clear()
                        if not isinstance(exc, StoreUnavailable):
                            log.exception("storing the snapshots of watched jobs failed")
                        return
        finally:
            self._storing = None

    async def _record(self, trackers: list[Tracked]) -> None:
        if self.leases is not None and self.store.shared and trackers:
            await self.leases.record(t.job_id for t in trackers)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Running snapshots being written: a terminal one waits for them (it goes last)."""
        written = asyncio.get_running_loop().create_future()
        self._writes.add(written)
        try:
            yield
        finally:
            self._writes.discard(written)
            written.set_result(None)

    async def finish(self, tracker: Tracked, write: FinalWrite | None = None) -> None:
        """A job ended: its watchers hear it and its terminal snapshot is stored (or kept here
        and retried, while a shared store is away). ``write``: how it is stored instead (with
        what must land together with it: a durable job's result); its watchers hear of it
        once it is."""
        tracker.dirty = False
        snapshot = tracker.snapshot
        try:
            if tracker.job_id in self._disowned:
                self._disowned.discard(tracker.job_id)
                return
            if tracker.watched and write is None:
                self.publish(tracker)
            if self._writes:
                # An older snapshot of this job may be on its way: the terminal one goes after.
                await asyncio.wait(set(self._writes))
            if write is not None:
                if await write(snapshot) and tracker.watched:
                    self.publish(tracker)
            elif self.store.shared:
                await self._final.put(snapshot.job_id, snapshot)
            else:
                await self.store.put(snapshot)
        finally:
            if self._live.get(tracker.job_id) is tracker:
                del self._live[tracker.job_id]

    async def _write_final(self, snapshots: dict[str, JobSnapshot]) -> None:
        await self.store.sync(list(snapshots.values()), (), ())

    def disown(self, job_id: str) -> None:
        """The fleet ended this job (its lease lapsed and another instance reaped it): when
        it ends here, that end is neither stored nor published."""
        if job_id in self._live:
            self._disowned.add(job_id)

    # ------------------------------------------------------------------ watchers
    async def watch(self, owner: str, job_id: str) -> None:
        """A subscriber connected here joined the job's room (it may not have started yet)."""
        room = room_for(owner, job_id)
        if self.store.shared:
            self._marked[room] = time.monotonic()
            try:
                await self.store.sync((), (room,), ())
            except StoreUnavailable:
                self._marked[room] = -math.inf  # marked by the first sync that gets through
            self._keep_in_sync()
        tracker = self._live.get(job_id)
        if tracker is not None and tracker.owner == owner:
            tracker.watch()

    # ------------------------------------------------------------------ reads
    async def find(self, job_id: str) -> JobSnapshot | None:
        """The job's snapshot, whoever owns it (for deciding whose room a subscriber joins)."""
        tracker = self._live.get(job_id)
        if tracker is not None:
            return tracker.snapshot
        return self._final.pending(job_id) or await self.store.get(job_id)

    async def get(self, job_id: str, owner: str) -> JobSnapshot | None:
        """The job's snapshot if ``owner`` may see it (another key's job reads as unknown):
        current when the job runs here, else as last stored (a running job's may be up to
        about a second behind; see the module's docstring)."""
        tracker = self._live.get(job_id)
        if tracker is not None:
            snapshot: JobSnapshot | None = tracker.current()
        else:
            snapshot = self._final.pending(job_id) or await self.store.get(job_id)
        if snapshot is None or snapshot.owner != owner:
            return None
        return snapshot

    # ------------------------------------------------------------------ shared store
    def _keep_in_sync(self) -> None:
        if self.store.shared and self._sync_task is None:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        try:
            while self._live or self._marked:
                await asyncio.sleep(self.sync_interval)
                try:
                    await self.sync()
                except StoreUnavailable:  # logged by the policy: the next round tries again
                    pass
                except Exception:
                    log.exception("progress sync with the store failed")
        finally:
            self._sync_task = None

    async def sync(self) -> None:
        """One round trip to a shared store: rewrite the snapshots of running jobs that changed
        (about once a second), renew the marks of rooms watched from here, and learn which
        running jobs are watched."""
        now = time.monotonic()
        trackers = list(self._live.values())
        changed = []
        if now - self._refreshed >= self.refresh_seconds:
            self._refreshed = now
            changed = [tracker for tracker in trackers if tracker.dirty]
        for tracker in changed:
            tracker.dirty = False
        renew = []
        for room, marked_at in list(self._marked.items()):
            if not self.local(room):
                del self._marked[room]  # nobody here watches it any more: let it expire
            elif now - marked_at >= self.store.watch_ttl / 3:
                self._marked[room] = now
                renew.append(room)
        if not (changed or renew or trackers):
            return
        try:
            with self._writing():
                await self._record(changed)
                marked = await self.store.sync([t.snapshot for t in changed], renew,
                                               [t.room for t in trackers])
        except StoreUnavailable:
            # It may come back empty (a restarted Redis): everything is written again.
            for tracker in trackers:
                tracker.dirty = not tracker.terminal
            for room in self._marked:
                self._marked[room] = -math.inf
            raise
        except BaseException:
            for tracker in changed:  # written next time
                tracker.dirty = not tracker.terminal
            raise
        for tracker, remote in zip(trackers, marked, strict=True):
            if remote or self.local(tracker.room):
                tracker.watch()
            else:
                tracker.unwatch()

    async def aclose(self) -> None:
        for task in (self._sync_task, self._storing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sync_task = self._storing = None
        await self._final.aclose()
        await self.outbox.aclose()
        await self.store.aclose()
