"""Where job state shared between processes lives: the last snapshot of every job (for subscribe
acks and plain-HTTP readers) and the marks saying that someone watches a job.

One interface, two backends side by side, as python-socketio has for its managers: in memory
(one process) and Redis (several processes or hosts; every key starts with the configured
prefix). Snapshots outlive their job for ``retention`` seconds; a watch mark lives
``watch_ttl`` seconds unless the process whose subscriber set it marks it again.

The owning process does not write every update here: it writes a job's first snapshot (which
also claims the id), its last (terminal) one, and, in a shared store, the latest one at most
every half second while the job runs (see :class:`~proxy.progress.hub.ProgressHub`). Each of
those is one round trip to Redis, pipelined with whatever else is due. A Redis that does not
answer makes each call raise ``StoreUnavailable`` (:mod:`proxy.fleet.policy`); the hub decides
what that means (writes are best effort and retried, reads and claims answer 503).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol

import orjson

from proxy.fleet.batch import Batch, Script
from proxy.fleet.policy import StorePolicy
from proxy.progress.ended import EndedSnapshots
from proxy.progress.snapshot import JobSnapshot

WATCH_TTL = 10.0
# Snapshots kept as objects past their retention are dropped at most this often (reads skip
# them anyway).
SWEEP_SECONDS = 60.0
# Ended jobs' snapshots kept as objects until this many (then they are settled at once, in one
# batch of ~3-5 ms: under steady load the process may never be idle).
SETTLE_AT = 1000


class Opened(NamedTuple):
    created: bool  # False: the job id is already taken
    watched: bool  # a watch mark for the job's room exists (set by a subscriber, anywhere)


class SnapshotStore(Protocol):
    # True when other processes read and write it too (Redis): the owner then refreshes the
    # snapshots of its running jobs there, and learns of watchers elsewhere through marks.
    shared: bool
    watch_ttl: float  # seconds a watch mark lives unless it is set again

    async def create(self, snapshot: JobSnapshot, room: str, replace: bool = False) -> Opened:
        """Store the first snapshot of a job unless its id is taken (``replace``: whatever
        an earlier attempt under that id left), and say whether its ``room`` is marked as
        watched (one round trip)."""

    async def put(self, snapshot: JobSnapshot) -> None:
        """Replace a job's snapshot (and restart its retention clock)."""

    async def get(self, job_id: str) -> JobSnapshot | None: ...

    async def end_lost(self, job_id: str, error: dict[str, Any]) -> JobSnapshot | None:
        """End a job whose instance was lost: its snapshot becomes ``failed`` with ``error``
        unless it has ended already (or is unknown). The new snapshot, or None."""

    async def sync(self, snapshots: Sequence[JobSnapshot], mark: Collection[str],
                   check: Sequence[str]) -> list[bool]:
        """One round trip: store ``snapshots`` (except over a stored snapshot that has ended:
        the fleet may have ended a job its cut-off instance still writes), mark the rooms in
        ``mark`` as watched (for
        ``watch_ttl`` seconds), and say which rooms of ``check`` are marked."""

    def settle(self) -> None:
        """Put what this process keeps as objects into its compact form (the idle passes call
        it; nothing to do for a store elsewhere)."""

    async def aclose(self) -> None: ...


class _Expiring:
    """A dict whose entries expire; expired ones are swept as new ones arrive (the watch marks:
    few, and short-lived)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[float, object]] = {}
        self._expiry: list[tuple[float, str]] = []

    def sweep(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, key = heapq.heappop(self._expiry)
            item = self.items.get(key)
            if item is not None and item[0] <= now:
                del self.items[key]

    def set(self, key: str, value: object, expires: float) -> None:
        self.items[key] = (expires, value)
        heapq.heappush(self._expiry, (expires, key))

    def get(self, key: str, now: float) -> object | None:
        item = self.items.get(key)
        return None if item is None or item[0] <= now else item[1]

    def clear(self) -> None:
        self.items.clear()
        self._expiry.clear()


class MemorySnapshotStore:
    """For one process: running jobs' snapshots in a dict; ended ones in another until
    :meth:`settle` moves them, serialised, to :class:`~proxy.progress.ended.EndedSnapshots`
    (why: see there); watch marks in a dict with expiry (the process knows its watchers
    without marks; they are kept anyway, so both backends behave alike)."""

    shared = False

    def __init__(self, retention: float, watch_ttl: float = WATCH_TTL) -> None:
        self.retention = retention
        self.watch_ttl = watch_ttl
        # job id -> (expiry, snapshot), by time.monotonic()
        self._running: dict[str, tuple[float, JobSnapshot]] = {}
        self._ended_here: dict[str, tuple[float, JobSnapshot]] = {}
        self._ended = EndedSnapshots()
        self._marks = _Expiring()
        self._next_sweep = 0.0

    def _marked(self, room: str, now: float) -> bool:
        return self._marks.get(room, now) is not None

    async def create(self, snapshot: JobSnapshot, room: str, replace: bool = False) -> Opened:
        now = time.monotonic()
        if replace:
            self._ended_here.pop(snapshot.job_id, None)
            self._ended.discard(snapshot.job_id)
        elif self._find(snapshot.job_id, now) is not None:
            return Opened(False, False)
        self._store(snapshot, now)
        return Opened(True, self._marked(room, now))

    async def put(self, snapshot: JobSnapshot) -> None:
        self._store(snapshot, time.monotonic())

    async def get(self, job_id: str) -> JobSnapshot | None:
        return self._find(job_id, time.monotonic())

    def settle(self) -> None:
        """Move the ended jobs' snapshots out of Python objects (the idle passes call this
        before they collect; see :mod:`proxy.service.memory`)."""
        if self._ended_here:
            self._ended.put(self._ended_here.values(), time.monotonic())
            self._ended_here = {}

    def _store(self, snapshot: JobSnapshot, now: float) -> None:
        if now >= self._next_sweep:  # past their retention: jobs whose end never came
            self._next_sweep = now + SWEEP_SECONDS
            for kept in (self._running, self._ended_here):
                for job_id in [j for j, (expires, _) in kept.items() if expires <= now]:
                    del kept[job_id]
        if snapshot.terminal:
            self._running.pop(snapshot.job_id, None)
            self._ended_here[snapshot.job_id] = (now + self.retention, snapshot)
            if len(self._ended_here) >= SETTLE_AT:
                self.settle()
        else:
            self._running[snapshot.job_id] = (now + self.retention, snapshot)

    def _find(self, job_id: str, now: float) -> JobSnapshot | None:
        found = self._running.get(job_id) or self._ended_here.get(job_id)
        if found is None:
            return self._ended.get(job_id, now)
        return found[1] if found[0] > now else None

    async def end_lost(self, job_id: str, error: dict[str, Any]) -> JobSnapshot | None:
        snapshot = await self.get(job_id)
        if snapshot is None or snapshot.terminal:
            return None
        ended = snapshot.failed(error)
        await self.put(ended)
        return ended

    async def sync(self, snapshots: Sequence[JobSnapshot], mark: Collection[str],
                   check: Sequence[str]) -> list[bool]:
        for snapshot in snapshots:
            stored = await self.get(snapshot.job_id)
            if stored is None or not stored.terminal:  # an ending stands (as in Redis)
                await self.put(snapshot)
        now = time.monotonic()
        self._marks.sweep(now)
        for room in mark:
            self._marks.set(room, True, now + self.watch_ttl)
        return [self._marked(room, now) for room in check]

    async def aclose(self) -> None:
        self._running.clear()
        self._ended_here.clear()
        self._ended.clear()
        self._marks.clear()


# Replace a snapshot only if it is still the one that was read (compare and set).
_REPLACE = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
""")


# Write snapshots (KEYS: their keys; ARGV: retention, then one snapshot each) except over one
# that has ended: an instance cut off from the fleet may write a job the fleet ended meanwhile
# before its next renewal tells it so, and the fleet's ending must stand. (Inside a JSON string
# every quote is escaped, so the pattern can only be the field itself.)
_PUT_UNLESS_ENDED = Script("""
local written = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not (current and (string.find(current, '"status":"failed"', 1, true)
                       or string.find(current, '"status":"succeeded"', 1, true)
                       or string.find(current, '"status":"cancelled"', 1, true))) then
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    written = written + 1
  end
end
return written
""")


class RedisSnapshotStore:
    """A job's snapshot is the JSON string at ``<prefix>:job:<id>``; a watch mark is the key
    ``<prefix>:watch:<room>``. Both expire by themselves. Every command goes through one
    :class:`~proxy.fleet.batch.Batch`, every call through the store's ``policy`` (so a call
    that cannot be made raises ``StoreUnavailable``)."""

    shared = True

    def __init__(self, batch: Batch, policy: StorePolicy, prefix: str, retention: float,
                 watch_ttl: float = WATCH_TTL) -> None:
        self.batch = batch
        self.policy = policy
        self.prefix = f"{prefix}:job:"
        self.marks = f"{prefix}:watch:"
        self.retention = max(1, round(retention))
        self._mark_ex = max(1, round(watch_ttl))
        self.watch_ttl = float(self._mark_ex)

    def _set(self, snapshot: JobSnapshot) -> tuple[Any, ...]:
        return ("SET", self.prefix + snapshot.job_id, orjson.dumps(snapshot.to_store()),
                "EX", self.retention)

    async def create(self, snapshot: JobSnapshot, room: str, replace: bool = False) -> Opened:
        created, marked = await self.policy.call("claiming a job id", lambda: self.batch.run(
            self._set(snapshot) if replace else (*self._set(snapshot), "NX"),
            ("EXISTS", self.marks + room)))
        return Opened(bool(created), bool(marked))

    async def put(self, snapshot: JobSnapshot) -> None:
        await self.policy.call("writing a snapshot", lambda: self.batch.run(self._set(snapshot)))

    async def get(self, job_id: str) -> JobSnapshot | None:
        (raw,) = await self.policy.call("reading a snapshot", lambda: self.batch.run(
            ("GET", self.prefix + job_id)))
        return JobSnapshot.from_store(orjson.loads(raw)) if raw else None

    async def end_lost(self, job_id: str, error: dict[str, Any]) -> JobSnapshot | None:
        key = self.prefix + job_id
        for _ in range(3):  # the owner wrote in between: read again
            (raw,) = await self.policy.call("reading a snapshot", lambda: self.batch.run(
                ("GET", key)))
            snapshot = JobSnapshot.from_store(orjson.loads(raw)) if raw else None
            if snapshot is None or snapshot.terminal:
                return None
            ended = snapshot.failed(error)
            args = [raw, orjson.dumps(ended.to_store()), self.retention]
            if await self.policy.call("ending a lost job", partial(
                    self.batch.script, _REPLACE, [key], args)):
                return ended
        return None

    async def sync(self, snapshots: Sequence[JobSnapshot], mark: Collection[str],
                   check: Sequence[str]) -> list[bool]:
        commands = [("SET", self.marks + room, b"1", "EX", self._mark_ex) for room in mark]
        if check:
            commands.append(("MGET", *(self.marks + room for room in check)))
        if snapshots:
            put = _PUT_UNLESS_ENDED.command(
                [self.prefix + snapshot.job_id for snapshot in snapshots],
                [self.retention, *(orjson.dumps(snapshot.to_store()) for snapshot in snapshots)])
            replies = await self.policy.call("progress sync", lambda: self.batch.run_with(
                _PUT_UNLESS_ENDED, put, *commands))
        elif commands:
            replies = await self.policy.call("progress sync", lambda: self.batch.run(*commands))
        else:
            return []
        return [value is not None for value in replies[-1]] if check else []

    def settle(self) -> None:
        """Nothing is kept here."""

    async def aclose(self) -> None:
        """The connection belongs to the gateway."""
