"""What a finished job cost: one place, so the ``cost`` in the response, the usage ledger's row
and the key's budget always agree (the service computes it once per job).

The policy for a cost the prices cannot work out: a job of a priced model whose settings match no
price (a size or tier the table lacks, a token-billed model whose upstream reported no usage and
no per-image estimate fits) is charged the model's highest price per image, times the images
returned: an upper bound, never nothing, so a budget cannot be spent through it. A model with no
price at all has no cost (``null``); keys with a budget may not use it
(:mod:`proxy.service.spending`).
"""

from __future__ import annotations

from proxy.billing.prices import Price
from proxy.core.events import Completed


def job_cost(price: Price | None, *, images: int, completed: Completed | None,
             resolved: dict[str, str], tier: str | None,
             kind: str = "generation") -> float | None:
    """USD: what the upstream says it charged, else ``price`` applied to the images made at the
    settings actually used (``resolved``; what the request left out is the provider's
    default), else the price's ceiling; None only when there is no price."""
    if completed is not None and completed.cost_usd is not None:
        return round(completed.cost_usd, 6)
    if price is None:
        return None
    cost = price.cost(images=images, usage=completed.usage if completed else None,
                      size=resolved.get("size"), quality=resolved.get("quality"),
                      tier=tier, kind=kind)
    if cost is None and price.ceiling is not None:
        cost = round(price.ceiling * images, 6)
    return cost
