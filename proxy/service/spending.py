"""A budget is only spent on what the gateway can count.

The policy for requests whose cost would be unknown, in two parts:

- a job of a priced model always has a cost: what the upstream says it charged, else the
  published prices at the settings used (a setting left out is priced as the provider bills it),
  else the model's highest price per image (:mod:`proxy.billing.cost`);
- a model with no price at all, or only token rates (no per-image price to bound a job whose
  upstream reports no usage), has no cost. A key with a budget may not use it, nor a model that
  could fall back to it: 403 ``model_unpriced`` naming ``model``. Keys without a budget may.
"""

from __future__ import annotations

from proxy.auth import Key
from proxy.core.errors import GatewayError
from proxy.routing.table import ModelTable, ServedModel


def bounded(served: ServedModel) -> bool:
    """Whether every job of ``served`` gets a cost (its price has a per-image ceiling)."""
    return served.price is not None and served.price.ceiling is not None


def require_known_cost(key: Key, models: ModelTable, served: ServedModel) -> None:
    """Refuse a key with a budget a job whose cost could be unknown (``served`` or any of its
    fallbacks, which may end up serving it, has no price)."""
    if key.budget_usd is None:
        return
    chain = [served, *(models.resolve(name) for name in served.config.fallbacks)]
    unpriced = [model.name for model in chain if not bounded(model)]
    if not unpriced:
        return
    listed = ", ".join(f"'{name}'" for name in unpriced)
    raise GatewayError(
        403, f"Key '{key.name}' has a budget, and this request could be served by a model with "
             f"no known price ({listed}), so what it spends could not be counted. Use a priced "
             "model, or ask the operator to price this one ('pricing' in its configuration).",
        type="permission_error", param="model", code="model_unpriced")
