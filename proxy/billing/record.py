"""What the ledger stores per request, and what a query returns.

Costs are kept as whole micro-dollars (``cost_micros``): every cost the gateway shows a client is
already rounded to six decimals, so this is lossless, and sums of integers are exact where sums of
floats drift (``0.1 + 0.1 + 0.1 + 0.2 != 0.5``). Python sees them as ``Decimal`` in totals and as
``float`` in rows and JSON (the float nearest the exact decimal, which prints as that decimal).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

UsageKind = Literal["generation", "edit"]
UsageStatus = Literal["succeeded", "failed", "cancelled"]

KINDS: frozenset[str] = frozenset({"generation", "edit"})
STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
MICROS = 6  # decimal places kept for USD


@dataclass(slots=True)
class UsageRecord:
    """One image request as the ledger keeps it."""

    job_id: str
    key: str  # the key's name; "" when the gateway has no keys
    model: str
    provider: str
    kind: UsageKind
    n: int  # images requested
    images: int  # images returned
    size: str | None
    quality: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost: float | None  # USD
    latency_ms: int
    status: UsageStatus
    error_code: str | None
    user: str | None  # the request's ``user``
    metadata: dict[str, Any] | None  # the request's ``metadata`` object
    created_at: float  # unix seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_to_micros(cost: float | Decimal | int | None) -> int | None:
    """USD to whole micro-dollars, half-even; None stays None. Rejects NaN and infinities."""
    if cost is None:
        return None
    if isinstance(cost, bool) or not isinstance(cost, (int, float, Decimal)):
        raise ValueError(f"cost must be a number or None, not {type(cost).__name__}")
    # repr() is the shortest decimal that round-trips: 0.1 is 0.1 here, not 0.1000000000000000055.
    exact = Decimal(repr(cost)) if isinstance(cost, float) else Decimal(cost)
    if not exact.is_finite():
        raise ValueError(f"cost must be finite, got {cost!r}")
    return int(exact.scaleb(MICROS).to_integral_value(rounding=ROUND_HALF_EVEN))


def micros_to_decimal(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-MICROS)


def micros_to_float(micros: int | None) -> float | None:
    return None if micros is None else float(micros_to_decimal(micros))


def _check_int(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"UsageRecord.{name} must be a non-negative integer, got {value!r}")


def _check_str(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"UsageRecord.{name} must be a string, got {value!r}")


def to_row(rec: UsageRecord) -> tuple[Any, ...]:
    """The row to insert, in ``COLUMNS`` order; ValueError for a record the table would refuse.

    Done on the caller's side so a bad record fails its own ``record`` call and never the batch
    it would have been written with.
    """
    for name in ("job_id", "key", "model", "provider"):
        _check_str(name, getattr(rec, name))
    for name in ("size", "quality", "error_code", "user"):
        _check_str(name, getattr(rec, name), optional=True)
    if rec.kind not in KINDS:
        raise ValueError(f"UsageRecord.kind must be one of {sorted(KINDS)}, got {rec.kind!r}")
    if rec.status not in STATUSES:
        raise ValueError(f"UsageRecord.status must be one of {sorted(STATUSES)}, "
                         f"got {rec.status!r}")
    for name in ("n", "images", "latency_ms"):
        _check_int(name, getattr(rec, name))
    for name in ("input_tokens", "output_tokens", "total_tokens"):
        _check_int(name, getattr(rec, name), optional=True)
    created_at = rec.created_at
    if (isinstance(created_at, bool) or not isinstance(created_at, (int, float))
            or not math.isfinite(created_at)):
        raise ValueError(f"UsageRecord.created_at must be unix seconds, got {created_at!r}")
    if rec.metadata is not None and not isinstance(rec.metadata, dict):
        raise ValueError("UsageRecord.metadata must be a dict or None")
    try:
        metadata = (None if rec.metadata is None else
                    json.dumps(rec.metadata, ensure_ascii=False, allow_nan=False,
                               separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"UsageRecord.metadata is not storable as JSON: {exc}") from exc
    return (rec.job_id, rec.key, rec.model, rec.provider, rec.kind, rec.n, rec.images, rec.size,
            rec.quality, rec.input_tokens, rec.output_tokens, rec.total_tokens,
            cost_to_micros(rec.cost), rec.latency_ms, rec.status, rec.error_code, rec.user,
            metadata, float(created_at))


def from_row(row: tuple[Any, ...]) -> UsageRecord:
    (job_id, key, model, provider, kind, n, images, size, quality, input_tokens, output_tokens,
     total_tokens, cost_micros, latency_ms, status, error_code, user, metadata,
     created_at) = row
    return UsageRecord(
        job_id=job_id, key=key, model=model, provider=provider, kind=kind, n=n, images=images,
        size=size, quality=quality, input_tokens=input_tokens, output_tokens=output_tokens,
        total_tokens=total_tokens, cost=micros_to_float(cost_micros), latency_ms=latency_ms,
        status=status, error_code=error_code, user=user,
        metadata=None if metadata is None else json.loads(metadata), created_at=created_at)


@dataclass(slots=True)
class UsageTotals:
    """Sums over every matching row. Token and cost sums count the rows that have them;
    ``unpriced_requests`` says how many had no known cost."""

    requests: int = 0
    images: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)  # exact USD
    unpriced_requests: int = 0

    @classmethod
    def from_sums(cls, requests: int, images: int, input_tokens: int, output_tokens: int,
                  total_tokens: int, cost_micros: int, unpriced: int) -> UsageTotals:
        return cls(requests=requests, images=images, input_tokens=input_tokens,
                   output_tokens=output_tokens, total_tokens=total_tokens,
                   cost=micros_to_decimal(cost_micros), unpriced_requests=unpriced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "images": self.images,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost": float(self.cost),
            "unpriced_requests": self.unpriced_requests,
        }


@dataclass(slots=True)
class ModelUsage:
    model: str
    totals: UsageTotals

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, **self.totals.to_dict()}


@dataclass(slots=True)
class UsageReport:
    """Totals and the per-model breakdown cover every matching row; ``rows`` is one page,
    newest first. All three come from one read transaction, so they agree."""

    totals: UsageTotals
    by_model: list[ModelUsage]
    rows: list[UsageRecord]
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /v1/usage`` body."""
        return {
            "object": "usage",
            "totals": self.totals.to_dict(),
            "by_model": [m.to_dict() for m in self.by_model],
            "data": [r.to_dict() for r in self.rows],
            "has_more": self.has_more,
        }
