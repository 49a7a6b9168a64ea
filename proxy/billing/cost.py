"""What a finished job cost: one place, so the ``cost`` in the response, the usage ledger's row
and the key's budget always agree (the service computes it once per job)."""

from __future__ import annotations

from proxy.billing.prices import Price
from proxy.core.events import Completed


def job_cost(price: Price | None, *, images: int, completed: Completed | None,
             resolved: dict[str, str], tier: str | None) -> float | None:
    """USD: what the upstream says it charged, else ``price`` applied to the images made at the
    settings actually used (``resolved``); None when unknown."""
    if completed is not None and completed.cost_usd is not None:
        return round(completed.cost_usd, 6)
    if price is None:
        return None
    return price.cost(images=images, usage=completed.usage if completed else None,
                      size=resolved.get("size"), quality=resolved.get("quality"),
                      tier=tier or "1K")
