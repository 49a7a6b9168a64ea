"""Leases: which instance runs which job, and each key's concurrency slots.

Every job admitted in a fleet gets a *lease*: an entry with a deadline, renewed by the instance
running the job. One task per instance renews all of its leases every third of
``lease_seconds``, in one call. A key with ``concurrent_jobs`` also holds a *slot* per running
job: an entry in the key's set with the same deadline, renewed with the lease, so a slot frees
itself when its lease lapses (there is no counter to leak). Admission counts the key's slots
whose deadline has not passed, atomically, in the call that takes the slot and the lease.

When a lease lapses (its instance was killed, froze, or lost the store), any instance may
*reap* it: one atomic call removes it, frees its slot and leaves a tombstone, so exactly one
instance gets it (the caller then ends the job: :mod:`proxy.progress.reaper`). The tombstone
fences the old owner: if it was only cut off and renews again, it learns that its job was ended
(``on_lost``) and stops it, instead of carrying on as if nothing happened.

Two twins with the same behaviour (:mod:`proxy.fleet.leases_memory`,
:mod:`proxy.fleet.leases_redis`): in memory (one process: leases never lapse there unless a
test gives them an end) and Redis, where deadlines are Redis's own clock (``TIME``), the same for
every instance. Redis keys (``<prefix>:fleet:``): ``deadlines`` (sorted set: lease → deadline in
ms), ``leases`` (hash: lease → its owner key, instance and whether it holds a slot),
``slots:<key>`` (sorted set: lease → deadline; expires a lease after its last renewal),
``lost:<lease>`` (tombstone, kept ``retention`` seconds). A lease's name is its job id and a
random suffix, so two attempts with one job id never touch each other's lease. One Redis (or a
primary with replicas), not Redis Cluster: the scripts touch keys they compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from proxy.core.errors import StoreUnavailable
from proxy.core.nonces import nonce
from proxy.fleet.policy import background

log = logging.getLogger("proxy.fleet")

@dataclass(frozen=True, slots=True)
class Lapsed:
    """A lease reaped after it lapsed: the job it held was not ended by its instance."""

    job_id: str
    owner: str  # the key that owns the job
    instance: str  # the instance that held the lease
    # A job of the durable queue: its end is the queue's to write (it may run again).
    durable: bool = False


class JobLease:
    """One running job's lease (and, with a limited key, its slot); released exactly once.

    ``recorded``: whether the store may hold it. A lease without a slot starts unrecorded (see
    :meth:`LeaseTable.admit`) and is recorded by the next renewal, or earlier by
    :meth:`LeaseTable.record` when its job becomes visible to the fleet."""

    __slots__ = ("durable", "held", "job_id", "owner", "recorded", "slot", "table", "token")

    def __init__(self, table: LeaseTable, job_id: str, owner: str, slot: bool,
                 durable: bool = False) -> None:
        self.table = table
        self.job_id = job_id
        self.owner = owner
        self.slot = slot
        self.durable = durable
        # Unique in the fleet (a process's secret, then its counter) without a system call.
        self.token = f"{job_id}:{nonce()}"
        self.held = True
        self.recorded = True

    async def release(self) -> None:
        """Give the lease (and slot) back; best effort: one that cannot be released now lapses
        by itself."""
        if self.held:
            self.held = False
            await self.table.release(self)


LostHandler = Callable[[list[JobLease]], None]


class LeaseTable:
    """What both twins share: the leases this instance holds, and the task renewing them."""

    shared = False

    def __init__(self, lease_seconds: float, instance: str) -> None:
        self.lease_seconds = lease_seconds
        self.instance = instance
        self.held: dict[str, JobLease] = {}
        # Told of leases this instance held that the fleet ended (reaped while it was away).
        self.on_lost: LostHandler | None = None
        self._renewing: asyncio.Task[None] | None = None
        # Leases held here that the store has not seen yet, by job id.
        self._unrecorded: dict[str, list[JobLease]] = {}
        # Leases on their way to the store (a renewal or a record): token → that call's end.
        self._writing: dict[str, asyncio.Future[None]] = {}

    async def admit(self, job_id: str, owner: str, limit: int | None,
                    durable: bool = False) -> JobLease | None:
        """Lease ``job_id`` for ``owner`` and, with a ``limit``, take one of the owner's
        ``limit`` slots; None when they are all taken. ``StoreUnavailable`` when the store
        cannot say. ``durable``: a job of the durable queue (reaping its lease frees its slot
        but leaves its end to the queue).

        Without a ``limit`` nothing needs counting, and a lease only matters once the fleet can
        see the job (its snapshot is in the store): the lease is held here, unrecorded, and
        written by the next renewal (a job that ends before it never touches the store) or by
        :meth:`record`, which whoever first stores the job's running snapshot calls first. (A
        durable job's lease is written at once: the queue stores its snapshots itself.)"""
        if limit is None and not durable:
            lease = JobLease(self, job_id, owner, slot=False)
            lease.recorded = False
            self._hold(lease)
            self._unrecorded.setdefault(job_id, []).append(lease)
            return lease
        lease = JobLease(self, job_id, owner, slot=limit is not None, durable=durable)
        if not await self._admit(lease, limit):
            return None
        self._hold(lease)
        return lease

    async def record(self, job_ids: Iterable[str]) -> None:
        """Write the unrecorded leases of ``job_ids`` to the store now (their jobs are about to
        be visible to the fleet: a lapsed lease must then end them). ``StoreUnavailable`` when
        the store cannot take them (they stay unrecorded)."""
        leases = [lease for job_id in job_ids
                  for lease in self._unrecorded.pop(job_id, ()) if lease.held]
        if not leases:
            return
        for lease in leases:
            lease.recorded = True
        try:
            await self._write(leases)  # fresh tokens: none of them can have been reaped
        except BaseException:
            self._unrecord(leases)
            raise

    def adopt(self, job_id: str, owner: str, limit: int | None,
              durable: bool = False) -> JobLease:
        """A lease held without asking the store (it is down and the job was admitted anyway):
        the next renewal that reaches the store records it, and its slot."""
        lease = JobLease(self, job_id, owner, slot=limit is not None, durable=durable)
        self._hold(lease)
        return lease

    async def release(self, lease: JobLease) -> None:
        self.held.pop(lease.token, None)
        if not lease.recorded:  # never written: nothing to take back
            waiting = self._unrecorded.get(lease.job_id)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(lease)
                if not waiting:
                    del self._unrecorded[lease.job_id]
            return
        writing = self._writing.get(lease.token)
        if writing is not None:  # a renewal carries it: released after, or it would be again
            await asyncio.shield(writing)
        with contextlib.suppress(StoreUnavailable):
            await self._release(lease)

    async def renew(self) -> list[JobLease]:
        """Renew every lease held here (recording the unrecorded ones); the ones the fleet
        ended meanwhile are dropped and returned (their jobs must stop)."""
        leases = list(self.held.values())
        if not leases:
            return []
        # Marked before the call: a job ending while it is on its way releases its lease
        # (after it).
        fresh = [lease for lease in leases if not lease.recorded]
        for lease in fresh:
            lease.recorded = True
        self._unrecorded.clear()
        try:
            tokens = await self._write(leases)
        except BaseException:
            self._unrecord(fresh)
            raise
        lost = []
        for token in tokens:
            lease = self.held.pop(token, None)
            if lease is not None:
                lease.held = False
                lost.append(lease)
        return lost

    async def _write(self, leases: list[JobLease]) -> list[str]:
        """Renew (or record) ``leases`` in the store; a release of one of them meanwhile waits
        for this call, so it reaches the store after it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for lease in leases:
            self._writing[lease.token] = done
        try:
            return await self._renew(leases)
        finally:
            for lease in leases:
                if self._writing.get(lease.token) is done:
                    del self._writing[lease.token]
            done.set_result(None)

    def _unrecord(self, leases: list[JobLease]) -> None:
        """``leases`` were not written after all (the store did not answer)."""
        for lease in leases:
            if lease.held:
                lease.recorded = False
                self._unrecorded.setdefault(lease.job_id, []).append(lease)

    def _hold(self, lease: JobLease) -> None:
        self.held[lease.token] = lease
        if math.isfinite(self.lease_seconds) and (self._renewing is None
                                                  or self._renewing.done()):
            self._renewing = background(self._renewal())

    async def _renewal(self) -> None:
        while self.held:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                lost = await self.renew()
            except StoreUnavailable:
                continue  # logged by the policy; renewed once the store answers again
            except Exception:
                log.exception("renewing %d leases failed", len(self.held))
                continue
            if lost:
                log.warning("%d jobs of this instance (%s) were ended by the fleet: their leases "
                            "lapsed while it could not renew them", len(lost), self.instance)
                if self.on_lost is not None:
                    self.on_lost(lost)

    async def aclose(self) -> None:
        task, self._renewing = self._renewing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # What each twin does.
    async def _admit(self, lease: JobLease, limit: int | None) -> bool:
        raise NotImplementedError

    async def _renew(self, leases: list[JobLease]) -> list[str]:
        """Renew (or record again) ``leases``; the tokens of those that were reaped."""
        raise NotImplementedError

    async def _release(self, lease: JobLease) -> None:
        raise NotImplementedError

    async def reap(self, most: int = 100) -> list[Lapsed]:
        """Claim up to ``most`` lapsed leases (each is claimed once, fleet-wide): removed, their
        slots freed, their tokens tombstoned."""
        raise NotImplementedError
