"""Admission by capacity: how many jobs this process runs at once, in all and per model.

A job past a limit is refused at once with 503 and a ``retry-after`` (``gateway_busy``,
``model_busy``), never parked: a client (and the official SDKs, which retry 503s after
``retry-after``) knows where it stands, and a load balancer can send it elsewhere. The limits are
per process; a key's ``concurrent_jobs`` (:mod:`proxy.limits.guard`) is the fleet-wide one.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable

from proxy.core.errors import GatewayError

# Sockets a job holds: the client's and the upstream's, plus slack for files and the like.
FILES_PER_JOB = 3
# Files kept for everything that is not a job (listening sockets, Redis, the ledger, logs).
RESERVED_FILES = 100


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def auto_max_jobs() -> int:
    """As many jobs as the open-file limit allows, so the process never runs out of sockets
    (an ``EMFILE`` would refuse connections without an answer)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, (soft - RESERVED_FILES) // FILES_PER_JOB)


class Slot:
    """A running job's place; released exactly once."""

    __slots__ = ("_capacity", "_model")

    def __init__(self, capacity: Capacity, model: str) -> None:
        self._capacity: Capacity | None = capacity
        self._model = model

    def release(self) -> None:
        if self._capacity is not None:
            self._capacity._release(self._model)
            self._capacity = None


class Capacity:
    def __init__(self, total: int, retry_after: Callable[[str], float]) -> None:
        self.total = total
        self.running = 0
        self.started = 0  # jobs admitted since start
        self._per_model: dict[str, int] = {}
        # Seconds a refused client should wait, for a model: about how soon a slot frees up.
        self._retry_after = retry_after

    def acquire(self, model: str, model_limit: int | None) -> Slot:
        """A slot for a job of ``model``, or 503 when this process or the model is full."""
        if self.running >= self.total:
            raise self._busy(model, "gateway_busy",
                             f"The gateway is running as many jobs as it can ({self.total}).")
        running = self._per_model.get(model, 0)
        if model_limit is not None and running >= model_limit:
            raise self._busy(model, "model_busy",
                             f"Model '{model}' is running as many jobs as it may at once "
                             f"({model_limit}).")
        self.running += 1
        self.started += 1
        self._per_model[model] = running + 1
        return Slot(self, model)

    def _release(self, model: str) -> None:
        self.running -= 1
        left = self._per_model.get(model, 1) - 1
        if left:
            self._per_model[model] = left
        else:
            self._per_model.pop(model, None)

    def _busy(self, model: str, code: str, message: str) -> GatewayError:
        wait = max(1, min(30, math.ceil(self._retry_after(model))))
        return GatewayError(503, f"{message} Try again in {wait} s.", type="server_error",
                            code=code, headers={"retry-after": str(wait)})
