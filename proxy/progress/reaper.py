"""Ending the jobs of an instance that stopped (killed, frozen, cut off from the shared store).

Every instance runs a reaper. About three times per lease it asks the lease table for leases
that lapsed (one cheap call; :mod:`proxy.fleet.leases`); each lapsed lease is claimed by exactly
one instance, atomically, which frees its key's slot there and then. The claimer ends the job:
its snapshot becomes ``failed`` with the error ``instance_lost`` (unless the job had ended
already), and its watchers hear it through the Socket.IO manager, on whichever instance they are
connected to.

Right after the store was away, every lease looks lapsed: nobody could renew. So an instance
reaps only once the store has answered it for a whole lease (and half a second more, for every
instance's probe to notice it is back): by then every instance still alive has renewed its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from proxy.core.errors import StoreUnavailable, instance_lost
from proxy.fleet.leases import Lapsed, LeaseTable
from proxy.fleet.policy import StorePolicy
from proxy.progress.hub import room_for
from proxy.progress.outbox import Outbox
from proxy.progress.snapshots import SnapshotStore

log = logging.getLogger("proxy.progress")

REAP_MOST = 100  # leases claimed per sweep


class Reaper:
    def __init__(self, leases: LeaseTable, store: SnapshotStore, outbox: Outbox,
                 policy: StorePolicy) -> None:
        self.leases = leases
        self.store = store
        self.outbox = outbox
        self.policy = policy
        self.every = leases.lease_seconds / 3
        # After an outage: a lease for the owners to renew, plus their probes' delay to notice.
        self.grace = leases.lease_seconds + policy.probe_every
        self._unended: list[Lapsed] = []  # claimed, but the store went away before they ended
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            # Jittered, so instances started together do not all ask at the same moment.
            await asyncio.sleep(self.every * random.uniform(0.8, 1.0))
            try:
                await self.sweep()
            except StoreUnavailable:
                pass  # logged by the policy
            except Exception:
                log.exception("reaping lapsed leases failed")

    async def sweep(self) -> int:
        """Claim the lapsed leases and end their jobs; how many were claimed."""
        if self.policy.up_for() < self.grace:
            await self.policy.check()  # learn when the store answers (it counts from there)
            return 0
        unended, self._unended = self._unended, []
        for lost in unended:
            await self._end(lost)
        lapsed = await self.leases.reap(REAP_MOST)
        for lost in lapsed:
            await self._end(lost)
        return len(lapsed)

    async def _end(self, lost: Lapsed) -> None:
        if lost.durable:
            # Its slot is free now; the queue takes the job over (runs it again, or fails it
            # if its upstream call began) once its entry has been idle for a lease.
            log.warning("job %s of key '%s': its instance %s stopped renewing its lease; the "
                        "job queue takes it over", lost.job_id, lost.owner,
                        lost.instance or "?")
            return
        error = instance_lost(lost.instance or None).body()["error"]
        try:
            ended = await self.store.end_lost(lost.job_id, error)
        except StoreUnavailable:
            self._unended.append(lost)  # ended at the next sweep that reaches the store
            return
        if ended is None:  # it had ended, or the fleet never saw it: only its slot was held
            log.info("the lease of job %s of key '%s' lapsed (instance %s stopped renewing "
                     "it); its slot is free", lost.job_id, lost.owner, lost.instance or "?")
            return
        log.warning("job %s of key '%s' was ended (instance_lost): its instance %s stopped "
                    "renewing its lease", lost.job_id, lost.owner, lost.instance or "?")
        self.outbox.push(room_for(ended.owner, ended.job_id), ended.to_wire())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
