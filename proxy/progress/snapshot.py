"""A job's progress at one moment: what ``progress`` events, subscribe acks and
``GET /v1/images/jobs/{id}`` all return."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    job_id: str
    # Grows with every update, so late or reconnecting watchers can drop stale ones.
    seq: int
    status: Status
    percent: float
    model: str
    created_at: float
    updated_at: float
    step: int | None = None
    total_steps: int | None = None
    eta_s: float | None = None
    # While the job waits in the upstream's own queue: its place there (1 = next to run).
    queue_position: int | None = None
    stage: str | None = None
    message: str | None = None
    # True while the percentage is a guess from the model's recent latencies, not a signal.
    estimated: bool = False
    error: dict[str, Any] | None = None
    # The key that owns the job ("" when the gateway has no keys). Never sent to clients.
    owner: str = field(default="", repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_wire(self) -> dict[str, Any]:
        """What clients see: every field but ``owner``."""
        return {name: getattr(self, name) for name in WIRE_FIELDS}

    def to_store(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STORE_FIELDS}

    @classmethod
    def from_store(cls, data: dict[str, Any]) -> JobSnapshot:
        # Fields a newer gateway added are skipped, so processes of two versions can share
        # one store during a rolling upgrade.
        return cls(**{name: value for name, value in data.items() if name in _STORED})

    def failed(self, error: dict[str, Any]) -> JobSnapshot:
        """The update that ends this job failed with ``error`` (an OpenAI error object), when
        it is ended from outside (its instance was lost)."""
        return replace(self, seq=self.seq + 1, status="failed", eta_s=None, error=error,
                       queue_position=None, updated_at=time.time())


# Field names in declaration order (plain loops over these are ~5x faster than ``asdict``).
STORE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobSnapshot))
WIRE_FIELDS: tuple[str, ...] = tuple(name for name in STORE_FIELDS if name != "owner")
_STORED: frozenset[str] = frozenset(STORE_FIELDS)
