"""Leases in one process: the memory twin of :mod:`proxy.fleet.leases_redis`."""

from __future__ import annotations

import math
import time

from proxy.fleet.leases import JobLease, Lapsed, LeaseTable


class MemoryLeases(LeaseTable):
    """Leases in one process. The gateway makes them endless (a process cannot lose its own
    jobs); given an end, they lapse and are reaped exactly as in Redis."""

    def __init__(self, lease_seconds: float = math.inf, instance: str = "local",
                 retention: float = 3600.0) -> None:
        super().__init__(lease_seconds, instance)
        self.retention = retention
        self._deadlines: dict[str, float] = {}
        self._infos: dict[str, tuple[str, str, bool]] = {}  # token → owner, instance, slot
        self._slots: dict[str, dict[str, float]] = {}  # owner → token → deadline
        self._lost: dict[str, float] = {}  # token → when its tombstone goes

    async def _admit(self, lease: JobLease, limit: int | None) -> bool:
        now = time.monotonic()
        deadline = now + self.lease_seconds
        if limit is not None:
            slots = self._slots.setdefault(lease.owner, {})
            for token in [t for t, until in slots.items() if until <= now]:
                del slots[token]
            if len(slots) >= limit:
                return False
            slots[lease.token] = deadline
        self._deadlines[lease.token] = deadline
        self._infos[lease.token] = (lease.owner, self.instance, lease.slot)
        return True

    async def _renew(self, leases: list[JobLease]) -> list[str]:
        now = time.monotonic()
        deadline = now + self.lease_seconds
        lost = []
        for lease in leases:
            if self._lost.get(lease.token, 0.0) > now:
                lost.append(lease.token)
                continue
            self._deadlines[lease.token] = deadline
            self._infos[lease.token] = (lease.owner, self.instance, lease.slot)
            if lease.slot:
                self._slots.setdefault(lease.owner, {})[lease.token] = deadline
        return lost

    async def _release(self, lease: JobLease) -> None:
        self._forget(lease.token)

    def _forget(self, token: str) -> tuple[str, str, bool] | None:
        self._deadlines.pop(token, None)
        info = self._infos.pop(token, None)
        if info is not None and info[2]:
            slots = self._slots.get(info[0])
            if slots is not None:
                slots.pop(token, None)
                if not slots:
                    del self._slots[info[0]]
        return info

    async def reap(self, most: int = 100) -> list[Lapsed]:
        now = time.monotonic()
        for token in [t for t, until in self._lost.items() if until <= now]:
            del self._lost[token]
        due = sorted((until, t) for t, until in self._deadlines.items() if until <= now)
        lapsed = []
        for _, token in due[:most]:
            info = self._forget(token) or ("", "", False)
            self._lost[token] = now + self.retention
            lapsed.append(Lapsed(token.split(":", 1)[0], info[0], info[1]))
        return lapsed
