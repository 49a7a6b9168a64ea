"""The counters behind the limits: one interface, in-memory here (Redis when several processes
share the keys), like httpx transports or python-socketio client managers."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WindowState:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until a slot frees up (0 when one is free now)


class Counters(Protocol):
    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        """Count one request in a sliding window, unless that would pass ``limit``."""

    async def acquire(self, key: str, limit: int) -> bool:
        """Take one of ``limit`` concurrent slots; False when all are taken."""

    async def release(self, key: str) -> None: ...


class MemoryCounters:
    """Exact sliding-window logs and slot counts for one process."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._slots: dict[str, int] = {}

    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        now = time.monotonic()
        log = self._hits.setdefault(key, deque())
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) >= limit:
            return WindowState(False, limit, 0, log[0] + window - now)
        log.append(now)
        reset = log[0] + window - now if len(log) >= limit else 0.0
        return WindowState(True, limit, limit - len(log), reset)

    async def acquire(self, key: str, limit: int) -> bool:
        taken = self._slots.get(key, 0)
        if taken >= limit:
            return False
        self._slots[key] = taken + 1
        return True

    async def release(self, key: str) -> None:
        taken = self._slots.get(key, 0)
        if taken <= 1:
            self._slots.pop(key, None)
        else:
            self._slots[key] = taken - 1
