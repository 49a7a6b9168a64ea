"""Turn a job's event stream into its ``UsageRecord``.

Feed it every event the job yields (``observe``) and call ``finish`` once the job is over; it
knows nothing of providers, only the shared event vocabulary.
"""

from __future__ import annotations

import time
from typing import Any

from proxy.billing.record import UsageKind, UsageRecord, UsageStatus
from proxy.core.events import Completed, Event, Failed, Image, ImagePiece, PartialImage, Usage


class UsageMeter:
    def __init__(self, *, job_id: str, key: str, model: str, provider: str, kind: UsageKind,
                 n: int, size: str | None = None, quality: str | None = None,
                 user: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.job_id, self.key, self.model, self.provider = job_id, key, model, provider
        self.kind, self.n, self.size, self.quality = kind, n, size, quality
        self.user = user
        self.metadata = dict(metadata) if metadata is not None else None
        self.created_at = time.time()
        self._started = time.monotonic()
        self._images: set[int] = set()
        self.completed: Completed | None = None
        self.failed: Failed | None = None
        # Base64 bytes relayed: final images, and partial images (streams).
        self.image_bytes = 0
        self.partial_bytes = 0

    def observe(self, event: Event) -> None:
        if isinstance(event, Image):
            self._images.add(event.index)
            self.image_bytes += len(event.b64_json or "")
        elif isinstance(event, ImagePiece):
            self.image_bytes += sum(map(len, event.parts))
        elif isinstance(event, PartialImage):
            self.partial_bytes += len(event.b64_json)
        elif isinstance(event, Completed):
            self.completed = event
        elif isinstance(event, Failed):
            self.failed = event

    @property
    def images(self) -> int:
        return len(self._images)

    @property
    def usage(self) -> Usage | None:
        return self.completed.usage if self.completed is not None else None

    def status(self, cancelled: bool = False) -> UsageStatus:
        """How the job ended: failed, succeeded (even if its client went away afterwards),
        cancelled (its client went away first), or failed (it ended without a result)."""
        if self.failed is not None:
            return "failed"
        if self.completed is not None:
            return "succeeded"
        return "cancelled" if cancelled else "failed"

    def finish(self, *, cancelled: bool = False, cost: float | None = None) -> UsageRecord:
        """The record. ``cost`` is the price-table cost; what the upstream says it charged
        (``Completed.cost_usd``) wins. A job that completed counts as succeeded even if its
        client went away afterwards: the work was done (and paid for)."""
        status = self.status(cancelled)
        error = self.failed.error if self.failed is not None else None
        resolved = self.completed.resolved if self.completed is not None else {}
        charged = self.completed.cost_usd if self.completed is not None else None
        usage = self.usage
        return UsageRecord(
            job_id=self.job_id, key=self.key, model=self.model, provider=self.provider,
            kind=self.kind, n=self.n, images=self.images,
            size=resolved.get("size") or self.size,
            quality=resolved.get("quality") or self.quality,
            input_tokens=usage.input_tokens if usage is not None else None,
            output_tokens=usage.output_tokens if usage is not None else None,
            total_tokens=usage.total_tokens if usage is not None else None,
            cost=round(charged, 6) if charged is not None else cost,
            latency_ms=max(0, round((time.monotonic() - self._started) * 1000)),
            status=status,
            error_code=(error.code or error.type) if error is not None else None,
            user=self.user, metadata=self.metadata, created_at=self.created_at)
