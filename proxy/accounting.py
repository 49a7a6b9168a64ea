"""What a finished job cost: one place, so the ``cost`` in the response, the usage ledger's row
and the key's budget always agree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.events import Completed
from proxy.writers.echo import resolved_settings

if TYPE_CHECKING:
    from proxy.jobs import Job


def job_cost(job: Job, images: int, completed: Completed | None) -> float | None:
    """USD: what the upstream says it charged, else the model's prices; None when unknown."""
    if completed is not None and completed.cost_usd is not None:
        return round(completed.cost_usd, 6)
    price = job.model.price
    if price is None:
        return None
    resolved = resolved_settings(job, completed)
    return price.cost(images=images, usage=completed.usage if completed else None,
                      size=resolved.get("size"), quality=resolved.get("quality"),
                      tier=job.request.resolution or "1K")
